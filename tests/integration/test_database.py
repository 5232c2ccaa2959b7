"""The platform database on the local PostgreSQL: schema, privileges, records, failures, and the real engine.

Each test creates a database of its own with roles of its own (tests/integration/database.py) and drops them
after; the engine tests run in an environment of their own (a throw-away backend, their own client ids and
platform namespace), so they neither see nor change the dev stacks or the dev database.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from sandbox_infra.database_plan import API, MIGRATOR, OPERATOR, READONLY, SERVICES, DatabaseRoles, Records
from sandbox_infra.limits import EMAIL_MAX, NAME_MAX
from sandbox_infra.plan import build_plan
from sandbox_infra.postgres import (
    DatabaseError,
    Login,
    Migration,
    Server,
    applied_migrations,
    apply_migrations,
    load_migrations,
    read_records,
    write_records,
)
from sandbox_infra.roster import validate
from sandbox_infra.settings import StackSettings
from sandbox_infra.source import Positions
from sandbox_infra.tiers import Tier
from tests.integration.database import ScratchDatabase, admin_url, run_dba_script, scratch_database, set_password
from tests.integration.engine import REPO, copy_project, kubectl_json, require_tools, run

pytestmark = pytest.mark.integration

TABLES = {"clients", "freelancers", "sandbox_configs", "sessions", "usage_tracking", "package_installations"}


@pytest.fixture
def database() -> Iterator[ScratchDatabase]:
    with scratch_database() as db:
        yield db


@pytest.fixture
def migrated(database: ScratchDatabase) -> ScratchDatabase:
    apply_migrations(database.server, database.login(), database.roles.owner, load_migrations())
    return database


# ---- the catalog --------------------------------------------------------------------------------------------


def catalog(db: ScratchDatabase) -> dict[str, Any]:
    """The schema as the catalog describes it: tables, columns, keys, constraints, indexes, triggers."""
    with db.connect() as conn:
        conn.execute("SET search_path = pg_catalog")  # names come out schema-qualified

        def rows(query: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(query, {"schema": "sandbox"})]

        return {
            "columns": {
                (t, c): (typ, length, nullable == "YES")
                for t, c, typ, length, nullable in rows(
                    "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable "
                    "FROM information_schema.columns WHERE table_schema = %(schema)s"
                )
            },
            "constraints": sorted(
                rows(
                    "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE connamespace = %(schema)s::regnamespace"
                )
            ),
            "indexes": sorted(rows("SELECT tablename, indexname FROM pg_indexes WHERE schemaname = %(schema)s")),
            "triggers": sorted(
                rows(
                    "SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                    "WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'sandbox.%%'"
                )
            ),
            "owners": sorted(rows("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = %(schema)s")),
        }


def test_the_schema_after_migrations_is_the_designs_improved(migrated: ScratchDatabase) -> None:
    schema = catalog(migrated)
    columns = schema["columns"]
    assert {t for t, _ in columns} == TABLES
    # The design's columns, with its types and widths (what docs/database.md lists as changed aside).
    expected = {
        ("clients", "id"): ("uuid", None, False),
        ("clients", "name"): ("character varying", NAME_MAX, False),
        ("clients", "kubernetes_namespace"): ("character varying", 63, False),
        ("clients", "resource_quota"): ("jsonb", None, False),
        ("clients", "state"): ("character varying", 16, False),
        ("clients", "updated_at"): ("timestamp with time zone", None, False),
        ("freelancers", "email"): ("character varying", EMAIL_MAX, False),
        ("freelancers", "display_name"): ("character varying", NAME_MAX, True),
        ("freelancers", "state"): ("character varying", 16, False),
        ("sandbox_configs", "freelancer_id"): ("uuid", None, False),
        ("sandbox_configs", "resource_tier"): ("character varying", 16, False),
        ("sandbox_configs", "custom_image_tag"): ("character varying", 128, True),
        ("sandbox_configs", "custom_image_digest"): ("character varying", 71, True),
        ("sandbox_configs", "pvc_workspace"): ("character varying", 63, False),
        ("sandbox_configs", "workspace_storage_bytes"): ("bigint", None, False),
        ("sandbox_configs", "state"): ("character varying", 16, False),
        ("sessions", "pod_name"): ("character varying", 255, True),
        ("sessions", "ended_at"): ("timestamp with time zone", None, True),
        ("sessions", "api_key_secret_ref"): ("character varying", 255, True),
        ("sessions", "status"): ("character varying", 50, False),
        ("usage_tracking", "timestamp"): ("timestamp with time zone", None, False),
        ("usage_tracking", "prompt_tokens"): ("integer", None, True),
        ("usage_tracking", "metadata"): ("jsonb", None, True),
        ("package_installations", "committed_to_image"): ("boolean", None, False),
    }
    assert {k: columns.get(k) for k in expected} == expected
    assert ("freelancers", "kubernetes_namespace") not in columns  # a freelancer works in one namespace per client
    assert ("sandbox_configs", "kubernetes_manifest") not in columns  # the cluster holds it
    assert {t: sorted(c for table, c in columns if table == t) for t in TABLES} == {
        "clients": sorted(
            ["id", "name", "kubernetes_namespace", "resource_quota", "state", "created_at", "updated_at"]
        ),
        "freelancers": sorted(["id", "email", "display_name", "state", "created_at", "updated_at"]),
        "sandbox_configs": sorted(
            [
                "id",
                "freelancer_id",
                "client_id",
                "resource_tier",
                "gpu",
                "custom_image_tag",
                "custom_image_digest",
                "pvc_workspace",
                "pvc_home",
                "workspace_storage_bytes",
                "home_storage_bytes",
                "state",
                "created_at",
                "updated_at",
            ]
        ),
        "sessions": sorted(
            [
                "id",
                "freelancer_id",
                "client_id",
                "pod_name",
                "namespace",
                "started_at",
                "ended_at",
                "api_key_secret_ref",
                "resource_usage",
                "status",
            ]
        ),
        "usage_tracking": sorted(
            ["id", "session_id", "timestamp", "event_type", "prompt_tokens", "completion_tokens", "command", "metadata"]
        ),
        "package_installations": sorted(
            ["id", "freelancer_id", "package_manager", "package_name", "version", "installed_at", "committed_to_image"]
        ),
    }

    constraints = {(table, kind, definition) for table, kind, definition in schema["constraints"]}
    for table in TABLES:
        assert (f"sandbox.{table}", "p", "PRIMARY KEY (id)") in constraints
    foreign_keys = {(t, d) for t, k, d in constraints if k == "f"}
    assert foreign_keys == {
        (
            "sandbox.sandbox_configs",
            "FOREIGN KEY (freelancer_id) REFERENCES sandbox.freelancers(id) ON DELETE RESTRICT",
        ),
        ("sandbox.sandbox_configs", "FOREIGN KEY (client_id) REFERENCES sandbox.clients(id) ON DELETE RESTRICT"),
        ("sandbox.sessions", "FOREIGN KEY (freelancer_id) REFERENCES sandbox.freelancers(id) ON DELETE RESTRICT"),
        ("sandbox.sessions", "FOREIGN KEY (client_id) REFERENCES sandbox.clients(id) ON DELETE RESTRICT"),
        (
            "sandbox.sessions",
            "FOREIGN KEY (freelancer_id, client_id) REFERENCES sandbox.sandbox_configs(freelancer_id, client_id) "
            "ON DELETE RESTRICT",
        ),
        ("sandbox.usage_tracking", "FOREIGN KEY (session_id) REFERENCES sandbox.sessions(id) ON DELETE CASCADE"),
        (
            "sandbox.package_installations",
            "FOREIGN KEY (freelancer_id) REFERENCES sandbox.freelancers(id) ON DELETE RESTRICT",
        ),
    }
    assert ("sandbox.clients", "u", "UNIQUE (kubernetes_namespace)") in constraints
    assert ("sandbox.sandbox_configs", "u", "UNIQUE (freelancer_id, client_id)") in constraints
    assert (
        "sandbox.freelancers",
        "x",
        "EXCLUDE USING btree (lower((email)::text) WITH =) WHERE (((state)::text = 'active'::text)) "
        "DEFERRABLE INITIALLY DEFERRED",
    ) in constraints
    tiers = next(d for t, k, d in constraints if t == "sandbox.sandbox_configs" and "resource_tier" in d)
    assert all(f"'{tier.value}'" in tiers for tier in Tier)

    assert schema["indexes"] == sorted(
        [
            *((t, f"{t}_pkey") for t in TABLES),
            ("clients", "clients_kubernetes_namespace_key"),
            ("freelancers", "freelancers_active_email_unique"),
            ("sandbox_configs", "sandbox_configs_freelancer_client_key"),
            ("sandbox_configs", "idx_sandbox_configs_client"),
            ("sessions", "idx_sessions_freelancer"),
            ("sessions", "idx_sessions_client"),
            ("usage_tracking", "idx_usage_session"),
            ("usage_tracking", "idx_usage_timestamp"),
            ("package_installations", "idx_package_installations_freelancer"),
        ]
    )
    assert schema["triggers"] == [
        ("sandbox.clients", "clients_set_updated_at"),
        ("sandbox.freelancers", "freelancers_set_updated_at"),
        ("sandbox.sandbox_configs", "sandbox_configs_set_updated_at"),
    ]
    assert {owner for _, owner in schema["owners"]} == {migrated.roles.owner}


def test_applying_again_changes_nothing(migrated: ScratchDatabase) -> None:
    before = catalog(migrated)
    assert apply_migrations(migrated.server, migrated.login(), migrated.roles.owner, load_migrations()) == []
    assert catalog(migrated) == before
    with migrated.connect() as conn:
        conn.execute(f"SET ROLE {migrated.roles.owner}")
        log = conn.execute("SELECT migration_id, operation FROM sandbox_migrations._yoyo_log").fetchall()
    assert log == [("0001.sandbox-schema", "apply")]


def test_a_migration_failing_midway_leaves_the_schema_as_it_was(migrated: ScratchDatabase) -> None:
    before = catalog(migrated)
    failing = Migration(
        "0002.failing",
        "CREATE TABLE sandbox.notes (id int PRIMARY KEY);\n"
        "ALTER TABLE sandbox.clients ADD COLUMN note text;\n"
        "INSERT INTO sandbox.notes VALUES (1), (1);\n",  # the second row breaks the primary key
    )
    with pytest.raises(DatabaseError, match=r"^migration 0002.failing failed and was rolled back: duplicate key"):
        apply_migrations(migrated.server, migrated.login(), migrated.roles.owner, (*load_migrations(), failing))
    assert catalog(migrated) == before
    assert applied_migrations(migrated.server, migrated.login(), migrated.roles.owner) == {"0001.sandbox-schema"}


# ---- privileges ---------------------------------------------------------------------------------------------


def _attempt(db: ScratchDatabase, kind: str, statement: str) -> str:
    """``ok``, or the SQLSTATE the server answered ``statement`` with, as role ``kind``."""
    try:
        with db.connect(kind) as conn:
            conn.execute(statement)
    except psycopg.Error as exc:
        return str(exc.sqlstate)
    return "ok"


DENIED = "42501"  # insufficient_privilege


def test_each_role_can_do_what_it_needs_and_nothing_more(migrated: ScratchDatabase) -> None:
    client, freelancer = uuid.uuid4(), uuid.uuid4()
    insert_client = (
        f"INSERT INTO sandbox.clients (id, name, kubernetes_namespace) VALUES ('{client}', 'C', 'client-{client}')"
    )
    insert_freelancer = f"INSERT INTO sandbox.freelancers (id, email) VALUES ('{freelancer}', 'f@example.com')"
    create = "CREATE TABLE sandbox.mine (id int)"
    drop = "DROP TABLE sandbox.sessions"
    outcomes = {
        API: [
            _attempt(migrated, API, insert_client),
            _attempt(migrated, API, f"UPDATE sandbox.clients SET name = 'D' WHERE id = '{client}'"),
            _attempt(migrated, API, "SELECT count(*) FROM sandbox.usage_tracking"),
            _attempt(migrated, API, f"DELETE FROM sandbox.clients WHERE id = '{client}'"),
            _attempt(migrated, API, create),
            _attempt(migrated, API, drop),
            _attempt(migrated, API, "TRUNCATE sandbox.sessions"),
            _attempt(migrated, API, "ALTER TABLE sandbox.sessions ADD COLUMN x int"),
        ],
        OPERATOR: [
            _attempt(migrated, OPERATOR, insert_freelancer),
            _attempt(
                migrated, OPERATOR, f"UPDATE sandbox.freelancers SET display_name = 'F' WHERE id = '{freelancer}'"
            ),
            _attempt(migrated, OPERATOR, "SELECT count(*) FROM sandbox.sandbox_configs"),
            _attempt(migrated, OPERATOR, f"DELETE FROM sandbox.freelancers WHERE id = '{freelancer}'"),
            _attempt(migrated, OPERATOR, create),
            _attempt(migrated, OPERATOR, drop),
        ],
        READONLY: [
            _attempt(migrated, READONLY, "SELECT count(*) FROM sandbox.freelancers"),
            _attempt(migrated, READONLY, insert_client.replace(str(client), str(uuid.uuid4()))),
            _attempt(migrated, READONLY, "UPDATE sandbox.freelancers SET display_name = 'G'"),
            _attempt(migrated, READONLY, "DELETE FROM sandbox.freelancers"),
            _attempt(migrated, READONLY, create),
        ],
    }
    assert outcomes == {
        API: ["ok", "ok", "ok", "ok", DENIED, DENIED, DENIED, DENIED],
        OPERATOR: ["ok", "ok", "ok", DENIED, DENIED, DENIED],
        READONLY: ["ok", DENIED, DENIED, DENIED, DENIED],
    }
    # The migration library's bookkeeping is out of every service's reach; temporary tables too.
    for kind in SERVICES:
        assert _attempt(migrated, kind, "SELECT * FROM sandbox_migrations._yoyo_migration") == DENIED
        assert _attempt(migrated, kind, "CREATE TEMPORARY TABLE t (id int)") == DENIED
    # The updated_at trigger runs whoever writes.
    with migrated.connect() as conn:
        conn.execute(f"SET ROLE {migrated.roles.owner}")
        created, updated = conn.execute(
            f"SELECT created_at, updated_at FROM sandbox.freelancers WHERE id = '{freelancer}'"
        ).fetchone() or (None, None)
    assert updated is not None and created is not None and updated > created


def test_a_table_a_later_migration_adds_gets_the_same_grants(migrated: ScratchDatabase) -> None:
    later = Migration("0002.notes", "CREATE TABLE sandbox.notes (id int PRIMARY KEY, body text);\n")
    apply_migrations(migrated.server, migrated.login(), migrated.roles.owner, (*load_migrations(), later))
    assert _attempt(migrated, API, "INSERT INTO sandbox.notes VALUES (1, 'x')") == "ok"
    assert _attempt(migrated, OPERATOR, "UPDATE sandbox.notes SET body = 'y'") == "ok"
    assert _attempt(migrated, OPERATOR, "DELETE FROM sandbox.notes") == DENIED
    assert _attempt(migrated, READONLY, "SELECT * FROM sandbox.notes") == "ok"
    assert _attempt(migrated, READONLY, "DELETE FROM sandbox.notes") == DENIED


def test_only_the_platforms_roles_may_connect(migrated: ScratchDatabase) -> None:
    stranger = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {stranger} LOGIN")
        set_password(conn, stranger, "stranger-password")
    try:
        server = migrated.server
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(
                host=server.host, port=server.port, dbname=migrated.name, user=stranger, password="stranger-password"
            )
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE {stranger}")


# ---- records ------------------------------------------------------------------------------------------------


def roster(clients: list[str], freelancers: list[dict[str, Any]]) -> Records:
    """The records of a roster, as the plan computes them."""
    data = {
        "version": 1,
        "clients": [{"id": c, "name": f"Client {c[:4]}"} for c in clients],
        "freelancers": freelancers,
    }
    settings = StackSettings(api_key_present=True, database_host="127.0.0.1", database_roles="existing")
    plan = build_plan(validate(data, Positions("roster.yaml"), settings), settings)
    assert plan.platform.database is not None
    return plan.platform.database.records


def test_records_follow_the_roster_and_history_survives(migrated: ScratchDatabase) -> None:
    server, login, owner = migrated.server, migrated.login(), migrated.roles.owner
    acme, globex = str(uuid.uuid4()), str(uuid.uuid4())
    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    team: list[dict[str, Any]] = [
        {"id": ada, "email": "ada@example.com", "sandboxes": [{"client": acme, "tier": "basic"}]},
        {
            "id": bob,
            "email": "bob@example.com",
            "name": "Bob",
            "sandboxes": [{"client": globex, "tier": "premium", "image": f"2026.12.01@sha256:{'ab' * 32}"}],
        },
    ]
    first = roster([acme, globex], team).to_inputs()
    assert write_records(server, login, owner, first)["freelancersWritten"] == 2

    # A session of Ada's, written by the API: history that must outlive her sandbox.
    with migrated.connect(API) as conn:
        conn.execute(
            "INSERT INTO sandbox.sessions (freelancer_id, client_id, pod_name) VALUES (%s, %s, 'sandbox-x-0')",
            (ada, acme),
        )

    with migrated.connect() as conn:
        conn.execute(f"SET ROLE {owner}")
        stamp = conn.execute("SELECT max(updated_at) FROM sandbox.sandbox_configs").fetchone()
    again = write_records(server, login, owner, first)
    assert {k: v for k, v in again.items() if v} == {}  # a second write changes nothing
    assert read_records(server, login, owner, first) == {**first, "strays": 0}

    # Bob moves to standard and swaps addresses with Ada; Ada is archived.
    team[1]["sandboxes"][0]["tier"] = "standard"
    team[0]["sandboxes"][0]["state"] = "archived"
    team[0]["email"], team[1]["email"] = team[1]["email"], team[0]["email"]
    second = roster([acme, globex], team).to_inputs()
    counts = write_records(server, login, owner, second)
    assert (counts["sandboxesWritten"], counts["freelancersWritten"]) == (2, 2)

    # Ada leaves the roster entirely (after archiving, as offboarding requires), and so does Acme.
    third = roster([globex], team[1:]).to_inputs()
    counts = write_records(server, login, owner, third)
    assert (counts["freelancersArchived"], counts["clientsArchived"]) == (0, 1)

    with migrated.connect(READONLY) as conn:
        rows = dict(conn.execute("SELECT id::text, state FROM sandbox.freelancers").fetchall())
        configs = conn.execute(
            "SELECT freelancer_id::text, resource_tier, state, custom_image_tag, custom_image_digest "
            "FROM sandbox.sandbox_configs ORDER BY 2"
        ).fetchall()
        clients = dict(conn.execute("SELECT id::text, state FROM sandbox.clients").fetchall())
        sessions = conn.execute("SELECT freelancer_id::text FROM sandbox.sessions").fetchall()
        emails = dict(conn.execute("SELECT id::text, email FROM sandbox.freelancers").fetchall())
        stamp_after = conn.execute("SELECT min(updated_at) FROM sandbox.sandbox_configs").fetchone()
    assert rows == {ada: "archived", bob: "active"}
    assert configs == [
        (ada, "basic", "archived", None, None),
        (bob, "standard", "active", "2026.12.01", f"sha256:{'ab' * 32}"),
    ]
    assert clients == {acme: "archived", globex: "active"}
    assert sessions == [(ada,)]
    assert emails == {ada: "bob@example.com", bob: "ada@example.com"}
    assert stamp is not None and stamp_after is not None and stamp_after[0] > stamp[0]
    # And nothing can delete what history refers to, not even the API.
    assert _attempt(migrated, API, f"DELETE FROM sandbox.freelancers WHERE id = '{ada}'") == "23503"


def test_a_wrong_password_or_an_unreachable_server_is_one_clear_error_and_changes_nothing(
    database: ScratchDatabase,
) -> None:
    wrong = Login(database.roles.migrator, "not-the-password", "sandbox-infra:databasePasswords.migrator")
    with pytest.raises(DatabaseError) as error:
        apply_migrations(database.server, wrong, database.roles.owner, load_migrations())
    assert str(error.value) == (
        f"PostgreSQL at {database.server.host}:{database.server.port} refused the password of role "
        f"{database.roles.migrator}: check the secret setting sandbox-infra:databasePasswords.migrator "
        "(and that the role exists: docs/database.md)"
    )
    nowhere = Server(database.server.host, 1, database.name, "disable")
    with pytest.raises(DatabaseError) as error:
        write_records(nowhere, database.login(), database.roles.owner, Records((), (), ()).to_inputs())
    assert str(error.value).startswith(f"cannot reach PostgreSQL at {database.server.host}:1: ")
    assert str(error.value).endswith("(settings sandbox-infra:databaseHost, sandbox-infra:databasePort)")
    with database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'sandbox%'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'sandbox'").fetchone() == (0,)


def test_the_dba_script_can_run_again(database: ScratchDatabase) -> None:
    before = catalog(database)
    run_dba_script(database.name)
    assert catalog(database) == before
    with database.connect(API) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (database.roles.api,)


# ---- the dev environment's roles ----------------------------------------------------------------------------


def test_the_local_servers_dev_roles_take_the_dev_stacks_passwords(tmp_path: Path) -> None:
    """tools/cluster.sh sets the dev roles' passwords from verifiers; Pulumi.dev.yaml holds the passwords,
    encrypted. Decrypted in a stack of a throw-away backend (the dev stacks are not touched), each must log in."""
    require_tools()
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        (project / name).write_text((REPO / name).read_text())
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path}", "PULUMI_CONFIG_PASSPHRASE": "sandbox-infra-dev"}
    run(["pulumi", "stack", "init", "dev"], cwd=project, env=env)
    config = json.loads(run(["pulumi", "config", "--show-secrets", "--json"], cwd=project, env=env).stdout)
    passwords = json.loads(config["sandbox-infra:databasePasswords"]["value"])
    settings = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    name = settings["sandbox-infra:databaseName"]
    roles = DatabaseRoles.of(name)
    assert set(passwords) == {MIGRATOR, *SERVICES}
    for kind, password in passwords.items():
        with psycopg.connect(
            host=settings["sandbox-infra:databaseHost"],
            port=settings["sandbox-infra:databasePort"],
            dbname=name,
            user=roles.name(kind),
            password=password,
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (roles.name(kind),)


# ---- the real engine ----------------------------------------------------------------------------------------


@dataclass
class Environment:
    """A project copy with an environment of its own whose database is a test database."""

    path: Path
    name: str
    env: dict[str, str]
    namespace: str
    database: ScratchDatabase
    clients: list[str]
    freelancers: list[str]

    def pulumi(self, *args: str, check: bool = True) -> Any:
        return run(
            ["pulumi", *args, "--stack", self.name, "--color", "never"], cwd=self.path, env=self.env, check=check
        )

    def set_secret(self, key: str, value: str) -> None:
        """`pulumi config set --secret --path sandbox-infra:KEY`, the value on stdin (never in a command line)."""
        subprocess.run(
            ["pulumi", "config", "set", "--stack", self.name, "--secret", "--path", f"sandbox-infra:{key}"],
            cwd=self.path,
            env={**os.environ, **self.env},
            input=value,
            capture_output=True,
            text=True,
            check=True,
        )

    def sandbox(self, *args: str, check: bool = True) -> dict[str, Any]:
        """`python -m sandbox_infra ARGS --env NAME --only platform --json`: the platform stack, policy pack on."""
        result = run(
            ["python", "-m", "sandbox_infra", *args, "--env", self.name, "--only", "platform", "--json"],
            cwd=self.path,
            env=self.env,
            check=check,
        )
        summary: dict[str, Any] = json.loads(result.stdout)
        return {**summary["stacks"][0], "exit": result.returncode}

    def steps(self) -> dict[str, str]:
        """`pulumi preview --json`: logical name -> operation, for everything that is not unchanged."""
        preview = json.loads(self.pulumi("preview", "--json").stdout)
        return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview.get("steps", []) if s["op"] != "same"}

    def write_roster(self, states: dict[str, str] | None = None, tiers: dict[str, str] | None = None) -> None:
        states, tiers = states or {}, tiers or {}
        roster = {
            "version": 1,
            "clients": [{"id": c, "name": f"Client {i}"} for i, c in enumerate(self.clients)],
            "freelancers": [
                {
                    "id": f,
                    "email": f"f{i}@example.com",
                    "sandboxes": [
                        {"client": self.clients[i % 2], "tier": tiers.get(f, "basic"), "state": states.get(f, "active")}
                    ],
                }
                for i, f in enumerate(self.freelancers)
            ],
        }
        (self.path / "roster.yaml").write_text(yaml.safe_dump(roster, sort_keys=False))

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with self.database.connect(READONLY) as conn:
            return [tuple(r) for r in conn.execute(query)]


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Environment]:
    require_tools()
    with scratch_database() as db:
        path = copy_project(tmp_path / "project")
        (tmp_path / "state").mkdir()
        env = {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_CONFIG_PASSPHRASE": "database-test"}
        name = "dbtest"
        environment = Environment(
            path,
            name,
            env,
            f"dbtest-{uuid.uuid4().hex[:12]}",
            db,
            [str(uuid.uuid4()) for _ in range(2)],
            [str(uuid.uuid4()) for _ in range(3)],
        )
        run(["pulumi", "stack", "init", name], cwd=path, env=env)
        settings = {
            "platformNamespace": environment.namespace,
            "databaseHost": db.server.host,
            "databasePort": str(db.server.port),
            "databaseName": db.name,
            "databaseSslMode": "disable",
            "databaseRoles": "existing",
            # No chart repository is reachable here: the Helm releases are off, as in the dev environment.
            "releases": "[]",
        }
        for key, value in settings.items():
            environment.pulumi("config", "set", f"sandbox-infra:{key}", value)
        environment.set_secret("geminiApiKey", "not-a-real-key")
        for kind, password in db.passwords.items():
            environment.set_secret(f"databasePasswords.{kind}", password)
        environment.write_roster()
        try:
            yield environment
        finally:
            run(["kubectl", "delete", "namespace", environment.namespace, "--ignore-not-found", "--wait=false"])


def secret_url(environment: Environment, kind: str) -> str:
    secret = kubectl_json("get", "secret", f"database-{kind}", "-n", environment.namespace)
    return base64.b64decode(secret["data"]["url"]).decode()


def test_preview_shows_and_up_applies_migrations_and_records(environment: Environment) -> None:
    first = environment.sandbox("up")
    assert first["status"] == "ok" and not first["policy_violations"], first
    assert {
        r[0]
        for r in environment.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'sandbox'")
    } == TABLES
    assert len(environment.rows("SELECT id FROM sandbox.freelancers WHERE state = 'active'")) == 3
    # Each service's Secret holds a connection string that works, for that role.
    for kind in SERVICES:
        with psycopg.connect(secret_url(environment, kind)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (environment.database.roles.name(kind),)

    # A second up changes nothing.
    assert environment.steps() == {}
    again = environment.sandbox("up")
    assert {op for op, n in again["changes"].items() if n} == {"same"}, again

    # A released migration that was edited is refused, naming it.
    first_migration = environment.path / "sandbox_infra" / "migrations" / "0001.sandbox-schema.sql"
    released = first_migration.read_text()
    first_migration.write_text(released + "-- an edit\n")
    edited = environment.pulumi("preview", check=False)
    assert edited.returncode != 0
    assert "migration 0001.sandbox-schema was changed after it was applied" in edited.stdout + edited.stderr
    first_migration.write_text(released)

    # A new migration is pending in the preview, and only up applies it.
    (environment.path / "sandbox_infra" / "migrations" / "0002.notes.sql").write_text(
        "CREATE TABLE sandbox.notes (id int PRIMARY KEY);\n"
    )
    assert environment.steps() == {"database-migration-0002.notes": "create"}
    assert environment.rows("SELECT to_regclass('sandbox.notes')::text") == [(None,)]
    assert environment.sandbox("up")["status"] == "ok"
    assert environment.rows("SELECT count(*) FROM sandbox.notes") == [(0,)]  # and the readonly role reads it

    # A roster change is an update of the records, listing the rows.
    first_freelancer, second_freelancer = environment.freelancers[:2]
    environment.write_roster(states={first_freelancer: "archived"}, tiers={second_freelancer: "standard"})
    assert environment.steps() == {"database-records": "update"}
    diff = environment.pulumi("preview", "--diff").stdout
    assert "[secret]" in diff and environment.database.passwords[MIGRATOR] not in diff
    assert environment.sandbox("up")["status"] == "ok"
    assert environment.rows(f"SELECT state FROM sandbox.freelancers WHERE id = '{first_freelancer}'") == [("archived",)]
    assert environment.rows(
        f"SELECT resource_tier FROM sandbox.sandbox_configs WHERE freelancer_id = '{second_freelancer}'"
    ) == [("standard",)]

    # A migration that fails midway changes nothing, and says which one.
    before = environment.rows(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'sandbox' ORDER BY 1, 2"
    )
    (environment.path / "sandbox_infra" / "migrations" / "0003.broken.sql").write_text(
        "ALTER TABLE sandbox.clients ADD COLUMN region text;\nSELECT 1 / 0;\n"
    )
    broken = environment.sandbox("up", check=False)
    assert (
        broken["exit"] == 1 and "migration 0003.broken failed and was rolled back: division by zero" in broken["error"]
    )
    assert (
        environment.rows(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'sandbox' ORDER BY 1, 2"
        )
        == before
    )
    (environment.path / "sandbox_infra" / "migrations" / "0003.broken.sql").unlink()

    # A recreated database is migrated and filled again by an up with --refresh.
    database = environment.database
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {database.name} WITH (FORCE)")
    run_dba_script(database.name)
    refreshed = environment.sandbox("up", "--refresh")
    assert refreshed["status"] == "ok", refreshed
    assert refreshed["changes"].get("create") == 2 and refreshed["changes"].get("update") == 1, refreshed
    assert len(environment.rows("SELECT id FROM sandbox.freelancers")) == 3

    # No password is in the state in clear (and the state does hold them, encrypted).
    state = environment.pulumi("stack", "export").stdout
    revealed = environment.pulumi("stack", "export", "--show-secrets").stdout
    for password in database.passwords.values():
        assert password not in state and password in revealed


def test_a_wrong_password_or_unreachable_server_stops_the_preview_naming_the_setting(
    environment: Environment,
) -> None:
    database = environment.database
    environment.set_secret("databasePasswords.api", "wrong")
    refused = environment.sandbox("up", check=False)
    assert refused["exit"] == 1
    assert (
        f"has a problem: PostgreSQL at {database.server.host}:{database.server.port} refused the password of role "
        f"{database.roles.api}: check the secret setting sandbox-infra:databasePasswords.api (and that the role "
        "exists: docs/database.md); nothing was changed"
    ) in refused["error"], refused["error"]
    assert "Traceback" not in refused["error"]
    environment.pulumi(
        "config", "set", "--secret", "--path", "sandbox-infra:databasePasswords.api", database.passwords[API]
    )

    environment.pulumi("config", "set", "sandbox-infra:databasePort", "1")
    unreachable = environment.sandbox("preview", check=False)
    assert unreachable["exit"] == 1
    assert f"cannot reach PostgreSQL at {database.server.host}:1: " in unreachable["error"]
    assert (
        "(settings sandbox-infra:databaseHost, sandbox-infra:databasePort); nothing was changed" in unreachable["error"]
    )
    with database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'sandbox'").fetchone() == (0,)
    # No service got credentials (the platform namespace itself was created: it does not depend on the database).
    assert run(["kubectl", "get", "secrets", "-n", environment.namespace, "-o", "name"]).stdout == ""
