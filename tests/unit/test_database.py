"""The platform database under Pulumi's mocks: its settings, its part of the plan, and what it declares.

pulumi-postgresql's plugin cannot be built here, so its resources (managed roles) are checked only here,
against the same privilege table (``PRIVILEGES``) the DBA script renders and the integration tests
(tests/integration/test_database.py) check on a real server.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from sandbox_infra import program
from sandbox_infra.changes import touched
from sandbox_infra.database_plan import (
    API,
    PRIVILEGES,
    SERVICES,
    DatabaseRoles,
    Records,
    dba_script,
    privilege_statements,
    row_json,
)
from sandbox_infra.database_resources import UNKNOWN, MigrationProvider, RecordsProvider
from sandbox_infra.plan import PLATFORM_SLICE, Plan, build_plan
from sandbox_infra.postgres import explain
from sandbox_infra.roster import load_roster
from sandbox_infra.settings import SettingsError, StackSettings, settings_from_mapping, settings_from_stack_file
from tests.unit.mocks import Recorder, Registered, is_secret, resolve, run_program
from tests.unit.test_roster import ACME, HEADER, check

DATABASE = {
    "databaseHost": "db.internal",
    "databasePort": "5432",
    "databaseName": "platform",
    "databaseSslMode": "verify-full",
}
PASSWORDS = ("admin", "migrator", "api", "operator", "readonly")
ARCHIVED_FREELANCER = "95a68ebd-8ec9-43ef-96f8-342291623c48"  # every sandbox of theirs is archived in roster.yaml


def settings(**values: str) -> StackSettings:
    # Releases off: their secrets are the services' tests' business.
    merged = {**DATABASE, "databaseRoles": "managed", "databaseAdminRole": "admin", "releases": "[]", **values}
    return settings_from_mapping(
        merged, secret_keys={"geminiApiKey": True, "databasePasswords": {k: True for k in PASSWORDS}}
    )


def plan_for(example_roster: Path, stack_settings: StackSettings) -> Plan:
    return build_plan(load_roster(example_roster, stack_settings), stack_settings)


def declare(example_roster: Path, stack_settings: StackSettings) -> Recorder:
    plan = plan_for(example_roster, stack_settings)

    def body() -> None:
        provider = k8s.Provider("kubernetes")
        passwords = {kind: pulumi.Output.secret(f"pw-{kind}") for kind in PASSWORDS}
        program.build(plan, PLATFORM_SLICE, {}, provider, program.StackSecrets(database_passwords=passwords))

    return run_program(body)


@pytest.fixture(scope="module")
def managed(request: pytest.FixtureRequest) -> Recorder:
    return declare(Path(request.config.rootpath) / "roster.yaml", settings())


@pytest.fixture(scope="module")
def existing(request: pytest.FixtureRequest) -> Recorder:
    return declare(Path(request.config.rootpath) / "roster.yaml", settings(databaseRoles="existing"))


def wire(recorder: Recorder, type_: str) -> dict[str, dict[str, Any]]:
    return {name: inputs for (typ, name), inputs in recorder.wire.items() if typ == type_}


def plain(value: Any) -> Any:
    """A wire value with Pulumi's secret wrappers removed."""
    if isinstance(value, dict):
        if "value" in value and len(value) == 2:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def depends_on(registered: Registered) -> list[Any]:
    value = registered.opts.depends_on
    return list(value) if isinstance(value, list) else [value]


def secret_on_the_wire(value: Any) -> bool:
    return isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value


# ---- settings ---------------------------------------------------------------------------------------------


def test_the_dev_environment_uses_existing_roles_on_the_local_server(repo: Path) -> None:
    dev = settings_from_stack_file(repo / "Pulumi.dev.yaml")
    assert (dev.database_host, dev.database_port, dev.database_ssl_mode) == ("127.0.0.1", "15432", "disable")
    assert dev.database_roles == "existing"
    assert dev.database_passwords_present == {"migrator", "api", "operator", "readonly"}


def test_without_a_host_there_is_no_database(example_roster: Path) -> None:
    assert plan_for(example_roster, StackSettings(api_key_present=True)).platform.database is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"databasePort": "54x"}, "sandbox-infra:databasePort: '54x' is not a TCP port (1-65535)"),
        ({"databasePort": "70000"}, "sandbox-infra:databasePort: '70000' is not a TCP port (1-65535)"),
        ({"databaseName": "Platform"}, "sandbox-infra:databaseName: 'Platform' is not a database name"),
        ({"databaseName": "pg_platform"}, "sandbox-infra:databaseName: 'pg_platform' is not a database name"),
        ({"databaseName": "p" * 55}, "is not a database name"),
        ({"databaseSslMode": "on"}, "sandbox-infra:databaseSslMode: 'on' is not an sslmode (one of disable, allow"),
        ({"databaseRoles": "dba"}, "sandbox-infra:databaseRoles: 'dba' is not one of managed, existing"),
        ({"databaseAdminRole": ""}, "sandbox-infra:databaseAdminRole: required when databaseRoles is managed"),
    ],
)
def test_bad_database_settings_name_the_setting(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        settings(**values)
    assert message in str(error.value)


def test_a_missing_password_names_the_secret_setting_and_the_command() -> None:
    with pytest.raises(SettingsError) as error:
        settings_from_mapping(
            {**DATABASE, "databaseRoles": "existing"}, secret_keys={"databasePasswords": {"migrator": True}}
        )
    assert str(error.value) == (
        "sandbox-infra:databasePasswords: no password for api, operator, readonly: set each with "
        "`pulumi config set --secret --path 'sandbox-infra:databasePasswords.api' ...` (docs/database.md)"
    )
    # Managed roles also need the administrator's.
    with pytest.raises(SettingsError, match="no password for admin: set each"):
        settings_from_mapping(
            {**DATABASE, "databaseAdminRole": "admin"},
            secret_keys={"databasePasswords": {k: True for k in ("migrator", "api", "operator", "readonly")}},
        )


def test_a_value_longer_than_its_column_is_a_roster_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "n" * 256
    body = HEADER.replace("name: Acme Corp", f"name: {long_name}").replace(
        "email: ada@example.com", "email: ada@example.com\n    name: " + "a" * 300
    )
    code, out = check(tmp_path, body + f"      - client: {ACME}\n        tier: basic\n", capsys)
    assert code == 1
    assert out == [
        "roster.yaml:4:11: clients[0].name: 256 characters, more than the 255 the platform database's column holds",
        "roster.yaml:8:11: freelancers[0].name: 300 characters, more than the 255 the platform database's column holds",
    ]


# ---- the plan ----------------------------------------------------------------------------------------------


def test_records_follow_the_roster(example_roster: Path) -> None:
    database = plan_for(example_roster, settings()).platform.database
    assert database is not None
    records = database.records
    assert len(records.clients) == 3 and len(records.freelancers) == 8 and len(records.sandboxes) == 9
    states = {f.id: f.state for f in records.freelancers}
    assert states[ARCHIVED_FREELANCER] == "archived"
    assert sum(state == "archived" for state in states.values()) == 1
    acme = next(c for c in records.clients if c.id == ACME)
    assert acme.namespace == f"client-{ACME}" and dict(acme.resource_quota)["requests.cpu"]
    pinned = next(s for s in records.sandboxes if s.custom_image_digest)
    assert pinned.custom_image_tag == "2026.11.20" and str(pinned.custom_image_digest).startswith("sha256:")
    sandbox = records.sandboxes[0]
    assert sandbox.pvc_workspace == f"workspace-{sandbox.freelancer_id}"
    assert sandbox.workspace_bytes % 2**30 == 0 and sandbox.home_bytes > 0
    assert database.roles == DatabaseRoles.of("platform")


def test_a_record_change_touches_only_the_platform_stack(example_roster: Path) -> None:
    stack_settings = settings()
    base = plan_for(example_roster, stack_settings)
    roster = load_roster(example_roster, stack_settings)
    first = roster.freelancers[0]
    renamed = roster.model_copy(
        update={"freelancers": [first.model_copy(update={"email": "new@example.org"}), *roster.freelancers[1:]]}
    )
    change = touched(base, build_plan(renamed, stack_settings))
    assert change.slices == {PLATFORM_SLICE: "database records changed: 1 freelancer"}


def test_each_record_is_one_canonical_json_string(example_roster: Path) -> None:
    """Rows are strings (a preview names the row that changes; the SDK handles strings fast), equal rows are
    equal strings, and an empty column is a JSON null inside the row (Pulumi would drop a None input)."""
    database = plan_for(example_roster, settings()).platform.database
    assert database is not None
    inputs = database.records.to_inputs()
    assert all(isinstance(row, str) for table in inputs.values() for row in table.values())
    row = json.loads(inputs["freelancers"][ARCHIVED_FREELANCER])
    assert row == {"displayName": None, "email": "frances@example.com", "state": "archived"}
    assert inputs["freelancers"][ARCHIVED_FREELANCER] == row_json(dict(reversed(row.items())))
    assert Records((), (), ()).to_inputs() == {"clients": {}, "freelancers": {}, "sandboxes": {}}


# ---- managed roles: pulumi-postgresql, under mocks only ------------------------------------------------------


def test_managed_roles(managed: Recorder) -> None:
    roles = {inputs["name"]: inputs for inputs in wire(managed, "postgresql:index/role:Role").values()}
    assert set(roles) == {f"platform_{kind}" for kind in ("owner", "migrator", "api", "operator", "readonly")}
    assert roles["platform_owner"]["login"] is False and "password" not in roles["platform_owner"]
    assert roles["platform_migrator"]["roles"] == ["platform_owner"]
    for kind in ("migrator", *SERVICES):
        role = roles[f"platform_{kind}"]
        assert role["login"] is True
        assert secret_on_the_wire(role["password"]) and plain(role["password"]) == f"pw-{kind}"
        assert kind == "migrator" or role["roles"] == []
        assert not role.get("superuser") and not role.get("createRole") and not role.get("createDatabase")


def test_managed_database_and_schema(managed: Recorder) -> None:
    (database,) = wire(managed, "postgresql:index/database:Database").values()
    assert (database["name"], database["owner"]) == ("platform", "platform_owner")
    (schema,) = wire(managed, "postgresql:index/schema:Schema").values()
    assert (schema["name"], schema["owner"], schema["database"]) == ("sandbox", "platform_owner", "platform")
    registered = next(r for r in managed.resources if r.type == "postgresql:index/database:Database")
    assert registered.opts.protect is True
    (provider,) = wire(managed, "pulumi:providers:postgresql").values()
    assert (provider["host"], provider["username"], provider["sslmode"]) == ("db.internal", "admin", "verify-full")
    assert secret_on_the_wire(provider["password"])


def test_managed_grants_and_default_privileges_are_the_privilege_table(managed: Recorder) -> None:
    """Every service role: CONNECT, USAGE on the schema, and exactly PRIVILEGES on existing objects and (by
    default privileges) on every object the owner creates later; PUBLIC keeps nothing on the database."""
    grants = [plain(g) for g in wire(managed, "postgresql:index/grant:Grant").values()]
    defaults = [plain(d) for d in wire(managed, "postgresql:index/defaultPrivileges:DefaultPrivileges").values()]
    expected = {(f"platform_{p.role}", p.object_type, tuple(sorted(p.privileges))) for p in PRIVILEGES}

    def on_objects(items: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...]]]:
        return {
            (g["role"], g["objectType"], tuple(sorted(g["privileges"])))
            for g in items
            if g["objectType"] in ("table", "sequence")
        }

    assert on_objects(grants) == expected
    assert all(g.get("objects") == [] and g["schema"] == "sandbox" for g in grants if g["objectType"] == "table")
    assert on_objects(defaults) == expected
    assert all(d["owner"] == "platform_owner" and d["schema"] == "sandbox" for d in defaults)
    access = {(g["role"], g["objectType"], tuple(g["privileges"])) for g in grants if g["objectType"] != "table"}
    access -= {(r, t, p) for r, t, p in access if t == "sequence"}
    assert access == {
        ("public", "database", ()),
        *((f"platform_{kind}", "database", ("CONNECT",)) for kind in SERVICES),
        *((f"platform_{kind}", "schema", ("USAGE",)) for kind in SERVICES),
    }
    assert len(grants) == len(set(map(repr, grants)))  # one resource per role and object type


def test_the_migrations_wait_for_the_managed_roles(managed: Recorder) -> None:
    (roles,) = managed.by_type("sandbox-infra:database:ManagedRoles")
    migrations = [r for r in managed.resources if r.type == "pulumi-python:dynamic/database:Migration"]
    assert migrations and roles.resource in depends_on(migrations[0])
    assert not managed.by_type("pulumi-python:dynamic/database:Logins")


# ---- existing roles, migrations, records and Secrets --------------------------------------------------------


def test_existing_roles_declare_no_postgresql_resource(existing: Recorder) -> None:
    assert not [typ for typ, _ in existing.wire if typ.startswith(("postgresql:", "pulumi:providers:postgresql"))]
    (logins,) = wire(existing, "pulumi-python:dynamic/database:Logins").values()
    assert set(plain(logins["logins"])) == set(SERVICES)
    assert secret_on_the_wire(logins["logins"])


def test_migrations_run_in_order_then_the_records(existing: Recorder) -> None:
    chain = [
        r
        for r in existing.resources
        if r.type in ("pulumi-python:dynamic/database:Migration", "pulumi-python:dynamic/database:Records")
    ]
    assert [r.name for r in chain] == ["database-migration-0001.sandbox-schema", "database-records"]
    for before, after in itertools.pairwise(chain):
        assert after.opts.depends_on == [before.resource]
    migration = wire(existing, "pulumi-python:dynamic/database:Migration")["database-migration-0001.sandbox-schema"]
    assert migration["owner"] == "platform_owner" and "CREATE TABLE sandbox.freelancers" in migration["sql"]
    assert secret_on_the_wire(migration["login"])
    assert plain(migration["login"]) == {
        "user": "platform_migrator",
        "password": "pw-migrator",
        "setting": "sandbox-infra:databasePasswords.migrator",
    }
    records = wire(existing, "pulumi-python:dynamic/database:Records")["database-records"]
    assert len(records["records"]["freelancers"]) == 8 and secret_on_the_wire(records["login"])


def test_each_service_gets_a_secret_connection_string(existing: Recorder) -> None:
    secrets = {r.name: r for r in existing.by_type("kubernetes:core/v1:Secret")}
    assert set(secrets) == {f"database-secret-{kind}" for kind in SERVICES}
    (records,) = existing.by_type("pulumi-python:dynamic/database:Records")
    for kind in SERVICES:
        secret = secrets[f"database-secret-{kind}"]
        data = secret.props["string_data"]
        assert is_secret(data["url"]) and is_secret(data["password"])
        assert resolve(data["url"]) == (
            f"postgresql://platform_{kind}:pw-{kind}@db.internal:5432/platform?sslmode=verify-full"
        )
        assert resolve(pulumi.Output.from_input(data["user"])) == f"platform_{kind}"
        assert resolve(secret.resource.metadata.namespace) == "platform-system"  # type: ignore[attr-defined]
        assert records.resource in depends_on(secret)


def test_a_password_is_percent_encoded_in_the_url(example_roster: Path) -> None:
    database = plan_for(example_roster, settings()).platform.database
    assert database is not None
    assert database.url("platform_api", "p@ss:w/rd%") == (
        "postgresql://platform_api:p%40ss%3Aw%2Frd%25@db.internal:5432/platform?sslmode=verify-full"
    )


# ---- the dynamic providers without a server ------------------------------------------------------------------


def test_nothing_connects_while_the_managed_roles_are_still_unknown() -> None:
    """In the preview that creates the roles, the migrator's name is unknown: check must not log in (it would
    fail: the role does not exist yet), and diff must report a change."""
    news = {
        "migration": "0001.x",
        "sql": "SELECT 1",
        "sha256": "x",
        "server": {"host": "127.0.0.1", "port": 1, "database": "d", "sslMode": "disable"},
        "login": {"user": UNKNOWN, "password": "p", "setting": "s"},
        "owner": "o",
    }
    assert MigrationProvider().check({}, news).failures == []
    assert MigrationProvider().diff("0001.x", news, news).changes is True
    records = {k: news[k] for k in ("server", "login", "owner")} | {"records": {}}
    assert RecordsProvider().check({}, records).failures == []


def test_an_unreachable_server_is_one_check_failure_naming_the_settings() -> None:
    news = {
        "records": {},
        "server": {"host": "127.0.0.1", "port": 1, "database": "d", "sslMode": "disable"},
        "login": {"user": "u", "password": "p", "setting": "sandbox-infra:databasePasswords.migrator"},
        "owner": "o",
    }
    (failure,) = RecordsProvider().check({}, news).failures
    assert failure.property == ""
    assert failure.reason.startswith("cannot reach PostgreSQL at 127.0.0.1:1: ")
    assert failure.reason.endswith(
        "(settings sandbox-infra:databaseHost, sandbox-infra:databasePort); nothing was changed"
    )


def test_connection_errors_name_the_setting() -> None:
    import psycopg

    from sandbox_infra.postgres import Login, Server

    server, login = Server("db", 5432, "platform", "verify-full"), Login("platform_api", "x", "sandbox-infra:x.api")
    cases = {
        'connection failed: connection to server at "db", port 5432 failed: FATAL:  password authentication '
        'failed for user "platform_api"': "refused the password of role platform_api: check the secret setting "
        "sandbox-infra:x.api",
        'connection failed: ... failed: FATAL:  database "platform" does not exist': "has no database platform "
        "(setting sandbox-infra:databaseName",
        "connection failed: ... failed: server does not support SSL, but SSL was required": "(setting "
        "sandbox-infra:databaseSslMode is verify-full)",
    }
    for text, expected in cases.items():
        assert expected in explain(psycopg.OperationalError(text), server, login)


# ---- the DBA script ---------------------------------------------------------------------------------------------


def test_the_dba_script_grants_the_privilege_table() -> None:
    script = dba_script("platform")
    statements = list(privilege_statements("platform", DatabaseRoles.of("platform")))
    assert all(statement in script for statement in statements)
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "sandbox" TO "platform_api";' in statements
    assert (
        'ALTER DEFAULT PRIVILEGES FOR ROLE "platform_owner" IN SCHEMA "sandbox" GRANT SELECT, INSERT, UPDATE, '
        'DELETE ON TABLES TO "platform_api";'
    ) in statements
    assert 'GRANT "platform_owner" TO "platform_migrator";' in script
    assert "PASSWORD" not in script  # a DBA sets passwords with \password; the script holds none
    assert sum(p.role == API for p in PRIVILEGES) == 2


def test_managed_resources_use_the_admin_provider(managed: Recorder) -> None:
    """The provider is built by the program and handed down (components never build providers)."""
    (provider,) = managed.by_type("pulumi:providers:postgresql")
    resources = [r for r in managed.resources if r.type.startswith("postgresql:index/")]
    # 5 roles, the database, the schema, 13 grants (PUBLIC, 3 CONNECT, 3 USAGE, 6 of PRIVILEGES), 6 defaults
    assert len(resources) == 5 + 1 + 1 + (1 + 3 + 3 + len(PRIVILEGES)) + len(PRIVILEGES)
    assert all(r.resource._provider is provider.resource for r in resources)
    secrets = managed.by_type("kubernetes:core/v1:Secret")
    assert all(isinstance(s.resource._provider, k8s.Provider) for s in secrets)
