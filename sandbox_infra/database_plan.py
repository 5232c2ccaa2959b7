"""The platform database's part of the plan: its server, its roles and their privileges, and the roster's records.

Plain frozen data, computed once from the validated roster and the settings like the rest of the plan
(:mod:`sandbox_infra.plan`), so the component only declares it, the change detection compares it, and the
tests read it without Pulumi or a server. The privileges are one table (:data:`PRIVILEGES`) rendered two
ways: as pulumi-postgresql resources when the program manages the roles (:mod:`sandbox_infra.database`),
and as the SQL script a DBA runs when it does not (:func:`dba_script`, which the local tooling runs too).
docs/database.md describes the roles and the records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sandbox_infra.quantity import parse_quantity
from sandbox_infra.roster import Roster, SandboxState
from sandbox_infra.settings import CONFIG_NAMESPACE, DATABASE_PASSWORDS, StackSettings

if TYPE_CHECKING:  # only for a type: plan.py imports this module
    from sandbox_infra.plan import TenantPlan

SCHEMA = "sandbox"
"""The schema of the platform's tables (the design's section 3.1)."""
MIGRATIONS_SCHEMA = "sandbox_migrations"
"""Where the migration library keeps its own bookkeeping, out of reach of every service role."""

OWNER, MIGRATOR, API, OPERATOR, READONLY = "owner", "migrator", "api", "operator", "readonly"
ROLE_KINDS = (OWNER, MIGRATOR, API, OPERATOR, READONLY)
SERVICES = (API, OPERATOR, READONLY)
"""The roles services log in as: each gets a Kubernetes Secret with its connection string."""

ACTIVE, ARCHIVED = "active", "archived"
"""A client's or freelancer's record state: archived once it left the roster (or, for a freelancer, once
every sandbox of theirs is archived). Records are never deleted: sessions and usage refer to them."""


@dataclass(frozen=True)
class Privilege:
    """What one role may do with one kind of object in the schema: the objects that exist (a grant) and
    every one the owner creates later (a default privilege), so a table a later migration adds gets the
    same grants without anyone remembering to add them."""

    role: str
    """One of :data:`SERVICES`."""
    object_type: str
    """``table`` or ``sequence``."""
    privileges: tuple[str, ...]


PRIVILEGES: tuple[Privilege, ...] = (
    # The platform API: reads and writes rows; never changes the schema (no TRUNCATE, REFERENCES, TRIGGER).
    Privilege(API, "table", ("SELECT", "INSERT", "UPDATE", "DELETE")),
    Privilege(API, "sequence", ("SELECT", "USAGE")),
    # The sandbox operator: reads the configuration, records sessions, usage and package installations;
    # never deletes a row and never changes the schema.
    Privilege(OPERATOR, "table", ("SELECT", "INSERT", "UPDATE")),
    Privilege(OPERATOR, "sequence", ("SELECT", "USAGE")),
    # Reporting and Grafana: read only.
    Privilege(READONLY, "table", ("SELECT",)),
    Privilege(READONLY, "sequence", ("SELECT",)),
)
"""Every privilege a service role holds in the schema. Besides these, each service role may connect to the
database and use the schema; nobody else may connect (``PUBLIC`` loses CONNECT and TEMPORARY); the owner
owns the database, both schemas and every object, and the migrator acts as the owner."""


@dataclass(frozen=True)
class DatabaseRoles:
    """The role names of one database: ``<database>_<kind>``."""

    owner: str
    migrator: str
    api: str
    operator: str
    readonly: str

    @classmethod
    def of(cls, database: str) -> DatabaseRoles:
        return cls(*(f"{database}_{kind}" for kind in ROLE_KINDS))

    def name(self, kind: str) -> str:
        name: str = getattr(self, kind)
        return name


def row_json(row: dict[str, Any]) -> str:
    """One record as the records resource holds it: canonical JSON, so equal rows are equal strings."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ClientRecord:
    """One row of ``sandbox.clients``."""

    id: str
    name: str
    namespace: str
    resource_quota: tuple[tuple[str, str], ...]
    """The namespace's ResourceQuota ``spec.hard``, as the plan computed it."""


@dataclass(frozen=True)
class FreelancerRecord:
    """One row of ``sandbox.freelancers``."""

    id: str
    email: str
    display_name: str | None
    state: str


@dataclass(frozen=True)
class SandboxRecord:
    """One row of ``sandbox.sandbox_configs``: one freelancer's sandbox for one client."""

    freelancer_id: str
    client_id: str
    tier: str
    gpu: bool
    custom_image_tag: str | None
    custom_image_digest: str | None
    """``sha256:...`` when the roster pins the image by digest (``TAG@sha256:...``)."""
    pvc_workspace: str
    pvc_home: str
    workspace_bytes: int
    home_bytes: int
    state: str

    @property
    def key(self) -> str:
        return f"{self.freelancer_id}/{self.client_id}"


def _row_key(row: ClientRecord | FreelancerRecord | SandboxRecord) -> str:
    return row.key if isinstance(row, SandboxRecord) else row.id


@dataclass(frozen=True)
class Records:
    """The rows that follow the roster, ordered by id."""

    clients: tuple[ClientRecord, ...]
    freelancers: tuple[FreelancerRecord, ...]
    sandboxes: tuple[SandboxRecord, ...]

    def changed_rows(self, other: Records) -> dict[str, int]:
        """How many rows differ from ``other`` (added, changed or gone), by table."""
        counts: dict[str, int] = {}
        for table in ("clients", "freelancers", "sandboxes"):
            mine, theirs = set(getattr(self, table)), set(getattr(other, table))
            counts[table] = len({_row_key(r) for r in mine ^ theirs})
        return counts

    def to_inputs(self) -> dict[str, Any]:
        """The records as the records resource's inputs: one map per table, keyed by id, so a preview shows
        exactly which rows change; each row is one compact JSON string (:func:`row_json`), which the SDK,
        the engine and the policy pack handle about five times faster than a map per row (10,000
        freelancers make some 125,000 values otherwise)."""
        return {
            "clients": {
                c.id: row_json({"name": c.name, "namespace": c.namespace, "resourceQuota": dict(c.resource_quota)})
                for c in self.clients
            },
            "freelancers": {
                f.id: row_json({"email": f.email, "displayName": f.display_name, "state": f.state})
                for f in self.freelancers
            },
            "sandboxes": {
                s.key: row_json(
                    {
                        "tier": s.tier,
                        "gpu": s.gpu,
                        "customImageTag": s.custom_image_tag,
                        "customImageDigest": s.custom_image_digest,
                        "pvcWorkspace": s.pvc_workspace,
                        "pvcHome": s.pvc_home,
                        "workspaceBytes": s.workspace_bytes,
                        "homeBytes": s.home_bytes,
                        "state": s.state,
                    }
                )
                for s in self.sandboxes
            },
        }


@dataclass(frozen=True)
class DatabasePlan:
    """Everything the ``Database`` component declares."""

    host: str
    port: int
    name: str
    ssl_mode: str
    roles_managed: bool
    """True: pulumi-postgresql creates the roles, the database, the schema and the privileges."""
    admin_role: str
    roles: DatabaseRoles
    records: Records

    def url(self, role: str, password: str) -> str:
        """A libpq connection URI (user and password percent-encoded)."""
        return (
            f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{self.name}"
            f"?sslmode={self.ssl_mode}"
        )


def password_setting(kind: str) -> str:
    """The secret setting holding a role's password, as a person types it."""
    return f"{CONFIG_NAMESPACE}:{DATABASE_PASSWORDS}.{kind}"


def _size(quantity: str) -> int:
    return math.ceil(parse_quantity(quantity))


def _image_part(image: str | None, part: int) -> str | None:
    """The tag (0) or the digest (2) of a roster ``image`` (``TAG`` or ``TAG@sha256:...``)."""
    return (image.partition("@")[part] or None) if image else None


def plan_records(roster: Roster, tenants: Iterable[TenantPlan]) -> Records:
    """The rows that follow the roster: every client and freelancer in it, and every sandbox."""
    tenants = list(tenants)
    sandboxes = [s for t in tenants for s in t.sandboxes]
    live = {s.freelancer_id for s in sandboxes if s.state is not SandboxState.ARCHIVED}
    has_sandbox = {s.freelancer_id for s in sandboxes}
    freelancers = tuple(
        FreelancerRecord(
            id=str(f.id),
            email=f.email,
            display_name=f.name,
            state=ARCHIVED if f.id in has_sandbox and f.id not in live else ACTIVE,
        )
        for f in sorted(roster.freelancers, key=lambda f: f.id.int)
    )
    clients = tuple(
        ClientRecord(str(t.client_id), t.client_name, t.namespace, tuple(sorted(t.quota.hard().items())))
        for t in sorted(tenants, key=lambda t: t.client_id.int)
    )
    rows = tuple(
        SandboxRecord(
            freelancer_id=str(s.freelancer_id),
            client_id=str(s.client_id),
            tier=s.tier.value,
            gpu=s.gpu,
            custom_image_tag=_image_part(s.custom_image_tag, 0),
            custom_image_digest=_image_part(s.custom_image_tag, 2),
            pvc_workspace=s.workspace.name,
            pvc_home=s.home.name,
            workspace_bytes=_size(s.workspace.size),
            home_bytes=_size(s.home.size),
            state=s.state.value,
        )
        for s in sorted(sandboxes, key=lambda s: (s.freelancer_id.int, s.client_id.int))
    )
    return Records(clients, freelancers, rows)


def plan_database(roster: Roster, settings: StackSettings, tenants: Iterable[TenantPlan]) -> DatabasePlan | None:
    """The database's plan, or None when the environment has no database (``databaseHost`` unset)."""
    if not settings.database_host:
        return None
    return DatabasePlan(
        host=settings.database_host,
        port=int(settings.database_port),
        name=settings.database_name,
        ssl_mode=settings.database_ssl_mode,
        roles_managed=settings.database_roles == "managed",
        admin_role=settings.database_admin_role,
        roles=DatabaseRoles.of(settings.database_name),
        records=plan_records(roster, tenants),
    )


def _ident(name: str) -> str:
    """A quoted SQL identifier (names are validated settings; quoting keeps the script right anyway)."""
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def privilege_statements(database: str, roles: DatabaseRoles) -> Iterator[str]:
    """The GRANT and ALTER DEFAULT PRIVILEGES statements of :data:`PRIVILEGES`, and the database and schema
    access every service role needs; run in ``database`` by a member of its owner. Idempotent."""
    db, schema, owner = _ident(database), _ident(SCHEMA), _ident(roles.owner)
    yield f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;"
    for kind in SERVICES:
        yield f"GRANT CONNECT ON DATABASE {db} TO {_ident(roles.name(kind))};"
        yield f"GRANT USAGE ON SCHEMA {schema} TO {_ident(roles.name(kind))};"
    plural = {"table": "TABLES", "sequence": "SEQUENCES"}
    for p in PRIVILEGES:
        role, what, objects = _ident(roles.name(p.role)), ", ".join(p.privileges), plural[p.object_type]
        yield f"GRANT {what} ON ALL {objects} IN SCHEMA {schema} TO {role};"
        yield f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT {what} ON {objects} TO {role};"


def dba_script(database: str) -> str:
    """The psql script that prepares a server for ``databaseRoles: existing``: the five roles, the database
    owned by the owner role, the schema, and every privilege. Safe to run again, as a superuser or as an
    administrator with CREATEROLE and CREATEDB (``psql -v ON_ERROR_STOP=1 -f``). It sets no password: set
    each login role's with psql's ``\\password`` (only a SCRAM verifier reaches the server), and the same
    value in the stack with ``pulumi config set --secret``."""
    roles = DatabaseRoles.of(database)
    owner = _ident(roles.owner)
    lines = [
        f"-- Roles and privileges of the platform database {database} (sandbox-infra, docs/database.md).",
        "-- Printed by `python -m sandbox_infra database-script`; safe to run again.",
        "\\set ON_ERROR_STOP on",
        "SET client_min_messages = warning;  -- no notice for what a run before already did",
    ]
    for kind in ROLE_KINDS:
        name = roles.name(kind)
        lines.append(
            f"SELECT format('CREATE ROLE %I', {_literal(name)}) "
            f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(name)}) \\gexec"
        )
        lines.append(f"ALTER ROLE {_ident(name)} {'NOLOGIN' if kind == OWNER else 'LOGIN'};")
    lines += [
        f"GRANT {owner} TO {_ident(roles.migrator)};",
        "-- An administrator that is not a superuser must be a member of the owner to create its database.",
        f"SELECT format('GRANT %I TO CURRENT_USER', {_literal(roles.owner)}) "
        f"WHERE NOT pg_has_role({_literal(roles.owner)}, 'MEMBER') \\gexec",
        f"SELECT format('CREATE DATABASE %I OWNER %I', {_literal(database)}, {_literal(roles.owner)}) "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {_literal(database)}) \\gexec",
        f"ALTER DATABASE {_ident(database)} OWNER TO {owner};",
        f"\\connect {_ident(database)}",
        "SET client_min_messages = warning;",
        f"CREATE SCHEMA IF NOT EXISTS {_ident(SCHEMA)} AUTHORIZATION {owner};",
        f"ALTER SCHEMA {_ident(SCHEMA)} OWNER TO {owner};",
        *privilege_statements(database, roles),
    ]
    return "\n".join(lines) + "\n"
