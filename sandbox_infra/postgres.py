"""What runs against the platform's PostgreSQL for real: connections, the schema migrations and the records.

Used by the Pulumi dynamic resources of :mod:`sandbox_infra.database_resources` (so migrations and records
are part of ``pulumi preview`` and ``up``) and by the tests, directly. Every failure to connect becomes one
:class:`DatabaseError` naming the stack setting a person has to fix; nothing here ever prints a password.

Migrations are SQL files in ``sandbox_infra/migrations/`` applied with yoyo-migrations (docs/database.md says
why that library), as the owner role, each in one transaction together with its record.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from yoyo import read_migrations
from yoyo.backends import PostgresqlPsycopgBackend
from yoyo.connections import DatabaseURI

from sandbox_infra.database_plan import MIGRATIONS_SCHEMA, SCHEMA, row_json
from sandbox_infra.settings import CONFIG_NAMESPACE

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_TABLE = "_yoyo_migration"
CONNECT_TIMEOUT = 10
"""Seconds to wait for the server before reporting it unreachable."""


class DatabaseError(RuntimeError):
    """A problem with the database a person can act on (the message names the setting)."""


@dataclass(frozen=True)
class Server:
    """Where the platform database is, as the stack settings say."""

    host: str
    port: int
    database: str
    ssl_mode: str

    @classmethod
    def from_inputs(cls, inputs: Mapping[str, Any]) -> Server:
        return cls(str(inputs["host"]), int(inputs["port"]), str(inputs["database"]), str(inputs["sslMode"]))

    def to_inputs(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "database": self.database, "sslMode": self.ssl_mode}


@dataclass(frozen=True)
class Login:
    """A role, its password, and the secret setting the password comes from (for error messages)."""

    user: str
    password: str
    setting: str

    @classmethod
    def from_inputs(cls, inputs: Mapping[str, Any]) -> Login:
        return cls(str(inputs["user"]), str(inputs["password"]), str(inputs["setting"]))

    def __repr__(self) -> str:  # never show the password, not even in a traceback's locals
        return f"Login(user={self.user!r}, setting={self.setting!r})"


def _setting(name: str) -> str:
    return f"{CONFIG_NAMESPACE}:{name}"


def explain(error: psycopg.Error, server: Server, login: Login, role: str | None = None) -> str:
    """One line saying what went wrong connecting, and which setting to look at."""
    text = str(error)
    reason = text.rsplit("failed:", 1)[-1].replace("FATAL:", "").strip().splitlines()[0].strip()
    where = f"PostgreSQL at {server.host}:{server.port}"
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"{where} refused the password of role {login.user}: check the secret setting {login.setting} "
            f"(and that the role exists: docs/database.md)"
        )
    if f'database "{server.database}" does not exist' in text:
        return f"{where} has no database {server.database} (setting {_setting('databaseName')}; docs/database.md)"
    if "does not exist" in text and "role" in text:
        return f"{where}: {reason} (roles are prepared by databaseRoles; docs/database.md)"
    if "permission denied to set role" in text:
        return (
            f"{where}: role {login.user} may not act as {role}: it must be a member of the owner role "
            "(`python -m sandbox_infra database-script` grants it)"
        )
    if "SSL" in text or "ssl" in text or "certificate" in text:
        return f"{where}: {reason} (setting {_setting('databaseSslMode')} is {server.ssl_mode})"
    if "pg_hba.conf" in text:
        return f"{where} does not accept role {login.user} from here: {reason} (ask its administrator)"
    return f"cannot reach {where}: {reason} (settings {_setting('databaseHost')}, {_setting('databasePort')})"


def connect(server: Server, login: Login, *, role: str | None = None) -> psycopg.Connection[Any]:
    """A connection as ``login`` (acting as ``role`` when given); :class:`DatabaseError` when it fails."""
    try:
        return psycopg.connect(**_connect_args(server, login, role))
    except psycopg.Error as exc:
        raise DatabaseError(explain(exc, server, login, role)) from None


def _connect_args(server: Server, login: Login, role: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "dbname": server.database,
        "user": login.user,
        "password": login.password,
        "sslmode": server.ssl_mode,
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "sandbox-infra",
    }
    if role:
        # Everything the migrator creates is the owner's, so no object depends on a login role.
        args["options"] = f"-c role={role}"
    return args


# ---- migrations ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One migration file: its id (the file name without ``.sql``, as yoyo names it) and its SQL."""

    id: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    """Every migration of ``directory``, in the order they apply (by file name)."""
    return tuple(
        Migration(path.name.removesuffix(".sql"), path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.sql"))
        if not path.name.endswith(".rollback.sql")
    )


class _AtomicBackend(PostgresqlPsycopgBackend):  # type: ignore[misc]
    """yoyo's psycopg 3 backend, applying a migration and recording it in one transaction.

    yoyo runs a migration's statements in one transaction on a connection of their own, then records it in
    a second one: a crash in between would leave it applied but unrecorded, and every later run would fail
    on it. PostgreSQL's DDL is transactional, so here the statements and the record commit together."""

    def apply_one(self, migration: Any, force: bool = False, mark: bool = True) -> None:
        self.ensure_internal_schema_updated()
        with self.transaction():
            migration.process_steps(self, "apply", force=force)
            self.log_migration(migration, "apply")
            if mark:
                self.mark_one(migration, log=False)


def _backend(server: Server, login: Login, owner: str) -> _AtomicBackend:
    args = _connect_args(server, login, owner)
    uri = DatabaseURI(
        scheme="postgresql+psycopg",
        username=login.user,
        password=login.password,
        hostname=server.host,
        port=server.port,
        database=server.database,
        args={k: v for k, v in args.items() if k not in ("host", "port", "dbname", "user", "password")}
        | {"schema": MIGRATIONS_SCHEMA},
    )
    try:
        backend = _AtomicBackend(uri, MIGRATION_TABLE)
        backend.init_database()
    except psycopg.Error as exc:
        raise DatabaseError(explain(exc, server, login, owner)) from None
    return backend


def _ensure_migrations_schema(server: Server, login: Login, owner: str) -> None:
    with connect(server, login, role=owner) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(MIGRATIONS_SCHEMA)))


def applied_migrations(server: Server, login: Login, owner: str) -> set[str]:
    """The ids of the migrations recorded as applied."""
    with connect(server, login, role=owner) as conn:
        table = f"{MIGRATIONS_SCHEMA}.{MIGRATION_TABLE}"
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return set()
        query = sql.SQL("SELECT migration_id FROM {}.{}").format(
            sql.Identifier(MIGRATIONS_SCHEMA), sql.Identifier(MIGRATION_TABLE)
        )
        return {str(row[0]) for row in conn.execute(query)}


def apply_migrations(server: Server, login: Login, owner: str, migrations: tuple[Migration, ...]) -> list[str]:
    """Apply those of ``migrations`` not applied yet, in order, each in one transaction with its record;
    returns the ids applied. A migration that fails is rolled back whole and stops the run."""
    _ensure_migrations_schema(server, login, owner)
    backend = _backend(server, login, owner)
    with tempfile.TemporaryDirectory(prefix="sandbox-infra-migrations-") as directory:
        for migration in migrations:
            Path(directory, f"{migration.id}.sql").write_text(migration.sql, encoding="utf-8")
        try:
            with backend.lock(), contextlib.redirect_stdout(io.StringIO()):
                pending = backend.to_apply(read_migrations(directory))
                ids = [m.id for m in pending]
                for migration in pending:
                    try:
                        backend.apply_one(migration)
                    except psycopg.Error as exc:
                        raise DatabaseError(f"migration {migration.id} failed and was rolled back: {exc}") from None
        finally:
            backend.connection.close()
    return ids


# ---- records ------------------------------------------------------------------------------------------------

_CLIENT_UPSERT = f"""
INSERT INTO {SCHEMA}.clients AS c (id, name, kubernetes_namespace, resource_quota, state)
VALUES (%(id)s, %(name)s, %(namespace)s, %(quota)s, 'active')
ON CONFLICT (id) DO UPDATE SET name = excluded.name, kubernetes_namespace = excluded.kubernetes_namespace,
    resource_quota = excluded.resource_quota, state = excluded.state
WHERE (c.name, c.kubernetes_namespace, c.resource_quota, c.state)
    IS DISTINCT FROM (excluded.name, excluded.kubernetes_namespace, excluded.resource_quota, excluded.state)
"""
_FREELANCER_UPSERT = f"""
INSERT INTO {SCHEMA}.freelancers AS f (id, email, display_name, state)
VALUES (%(id)s, %(email)s, %(displayName)s, %(state)s)
ON CONFLICT (id) DO UPDATE SET email = excluded.email, display_name = excluded.display_name, state = excluded.state
WHERE (f.email, f.display_name, f.state) IS DISTINCT FROM (excluded.email, excluded.display_name, excluded.state)
"""
_SANDBOX_COLUMNS = (
    "resource_tier, gpu, custom_image_tag, custom_image_digest, pvc_workspace, pvc_home, workspace_storage_bytes, "
    "home_storage_bytes, state"
)
_EXCLUDED = ", ".join(f"excluded.{c}" for c in _SANDBOX_COLUMNS.split(", "))
_CURRENT = ", ".join(f"s.{c}" for c in _SANDBOX_COLUMNS.split(", "))
_SANDBOX_UPSERT = f"""
INSERT INTO {SCHEMA}.sandbox_configs AS s (freelancer_id, client_id, {_SANDBOX_COLUMNS})
VALUES (%(freelancerId)s, %(clientId)s, %(tier)s, %(gpu)s, %(customImageTag)s, %(customImageDigest)s,
    %(pvcWorkspace)s, %(pvcHome)s, %(workspaceBytes)s, %(homeBytes)s, %(state)s)
ON CONFLICT (freelancer_id, client_id) DO UPDATE SET ({_SANDBOX_COLUMNS}) = ({_EXCLUDED})
WHERE ({_CURRENT}) IS DISTINCT FROM ({_EXCLUDED})
"""
# What left the roster is archived, never deleted: sessions, usage and installations refer to it.
_ARCHIVE_SANDBOXES = f"""
UPDATE {SCHEMA}.sandbox_configs SET state = 'archived'
WHERE state <> 'archived' AND NOT EXISTS (
    SELECT FROM unnest(%s::uuid[], %s::uuid[]) AS kept(f, c) WHERE kept.f = freelancer_id AND kept.c = client_id)
"""
_ARCHIVE_FREELANCERS = f"UPDATE {SCHEMA}.freelancers SET state = 'archived' WHERE state <> 'archived' AND id <> ALL(%s)"
_ARCHIVE_CLIENTS = f"UPDATE {SCHEMA}.clients SET state = 'archived' WHERE state <> 'archived' AND id <> ALL(%s)"


def write_records(server: Server, login: Login, owner: str, records: Mapping[str, Any]) -> dict[str, int]:
    """Make the rows follow the roster (``Records.to_inputs()``: JSON rows keyed by id), in one transaction:
    archive what left it, then insert or update the rest; a row that already matches is not touched (its
    ``updated_at`` stays). Returns how many rows each step changed."""
    clients, freelancers, sandboxes = records["clients"], records["freelancers"], records["sandboxes"]
    pairs = [key.split("/") for key in sandboxes]
    client_rows = [
        {"id": cid, "name": c["name"], "namespace": c["namespace"], "quota": json.dumps(c["resourceQuota"])}
        for cid, c in ((cid, json.loads(row)) for cid, row in clients.items())
    ]
    freelancer_rows = [{"id": fid, **json.loads(row)} for fid, row in freelancers.items()]
    sandbox_rows = [
        {"freelancerId": f, "clientId": c, **json.loads(row)}
        for (f, c), row in zip(pairs, sandboxes.values(), strict=True)
    ]
    counts: dict[str, int] = {}
    with connect(server, login, role=owner) as conn, conn.cursor() as cur:
        cur.execute(_ARCHIVE_SANDBOXES, ([f for f, _ in pairs], [c for _, c in pairs]))
        counts["sandboxesArchived"] = cur.rowcount
        cur.execute(_ARCHIVE_FREELANCERS, (list(freelancers),))
        counts["freelancersArchived"] = cur.rowcount
        cur.execute(_ARCHIVE_CLIENTS, (list(clients),))
        counts["clientsArchived"] = cur.rowcount
        upserts: tuple[tuple[str, LiteralString, list[dict[str, Any]]], ...] = (
            ("clients", _CLIENT_UPSERT, client_rows),
            ("freelancers", _FREELANCER_UPSERT, freelancer_rows),
            ("sandboxes", _SANDBOX_UPSERT, sandbox_rows),
        )
        for name, query, rows in upserts:
            cur.executemany(query, rows)
            counts[f"{name}Written"] = max(cur.rowcount, 0) if rows else 0
    return counts


def check_login(server: Server, login: Login) -> None:
    """Log in as ``login`` once: :class:`DatabaseError` naming its password setting when that fails."""
    with connect(server, login) as conn:
        conn.execute("SELECT 1")


def read_records(server: Server, login: Login, owner: str, ids: Mapping[str, Any]) -> dict[str, Any]:
    """The rows of the records ``ids`` names (as ``Records.to_inputs()`` shapes them), as the database holds
    them now, and how many active rows the roster does not know (``strays``): what a refresh compares."""
    clients, freelancers, sandboxes = ids["clients"], ids["freelancers"], ids["sandboxes"]
    result: dict[str, Any] = {"clients": {}, "freelancers": {}, "sandboxes": {}}
    with connect(server, login, role=owner) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.sandbox_configs",)).fetchone() == (None,):
            return {**result, "strays": 0}  # not migrated (a recreated database): no row is there yet
        for cid, name, namespace, quota, state in conn.execute(
            f"SELECT id::text, name, kubernetes_namespace, resource_quota, state FROM {SCHEMA}.clients "
            "WHERE id = ANY(%s)",
            (list(clients),),
        ):
            if state == "active":
                result["clients"][cid] = row_json({"name": name, "namespace": namespace, "resourceQuota": quota})
        for fid, email, display_name, state in conn.execute(
            f"SELECT id::text, email, display_name, state FROM {SCHEMA}.freelancers WHERE id = ANY(%s)",
            (list(freelancers),),
        ):
            result["freelancers"][fid] = row_json({"email": email, "displayName": display_name, "state": state})
        for row in conn.execute(
            f"SELECT freelancer_id::text, client_id::text, {_SANDBOX_COLUMNS} FROM {SCHEMA}.sandbox_configs"
        ):
            key = f"{row[0]}/{row[1]}"
            if key in sandboxes:
                tier, gpu, tag, digest, workspace, home, workspace_bytes, home_bytes, state = row[2:]
                result["sandboxes"][key] = row_json(
                    {
                        "tier": tier,
                        "gpu": gpu,
                        "customImageTag": tag,
                        "customImageDigest": digest,
                        "pvcWorkspace": workspace,
                        "pvcHome": home,
                        "workspaceBytes": workspace_bytes,
                        "homeBytes": home_bytes,
                        "state": state,
                    }
                )
        strays = conn.execute(
            f"SELECT (SELECT count(*) FROM {SCHEMA}.clients WHERE state = 'active' AND id <> ALL(%s))"
            f" + (SELECT count(*) FROM {SCHEMA}.freelancers WHERE state = 'active' AND id <> ALL(%s))",
            (list(clients), list(freelancers)),
        ).fetchone()
    result["strays"] = int(strays[0]) if strays else 0
    return result
