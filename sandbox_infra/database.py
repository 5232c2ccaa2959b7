"""The platform's PostgreSQL database: roles, schema migrations, the roster's records, services' credentials.

``databaseRoles: managed`` (production): pulumi-postgresql creates the five roles, the database, the schema and
every privilege of :data:`~sandbox_infra.database_plan.PRIVILEGES`, connecting as ``databaseAdminRole``.
``existing``: a DBA (locally, ``tools/cluster.sh``) ran ``python -m sandbox_infra database-script``, and the
program only proves that every service role logs in. Either way the program then applies the migrations and
writes the records as the migrator acting as the owner (dynamic resources, :mod:`sandbox_infra.database_resources`)
and puts each service's connection string into a Secret in the platform namespace. docs/database.md has more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_postgresql as postgresql

from sandbox_infra import naming
from sandbox_infra.database_plan import (
    MIGRATOR,
    PRIVILEGES,
    SCHEMA,
    SERVICES,
    DatabasePlan,
    password_setting,
)
from sandbox_infra.database_resources import RosterRecords, SchemaMigration, ServiceLogins
from sandbox_infra.postgres import Migration, Server


def secret_name(kind: str) -> str:
    """The Kubernetes Secret holding a service role's connection (``database-api``, ...)."""
    return f"database-{kind}"


@dataclass(frozen=True)
class DatabaseArgs:
    """Inputs of :class:`Database`."""

    plan: DatabasePlan
    """Server, roles and records (see :mod:`sandbox_infra.database_plan`)."""
    passwords: Mapping[str, pulumi.Input[str]]
    """Secret Outputs by role kind (``migrator``, ``api``, ``operator``, ``readonly``; ``admin`` when managed)."""
    migrations: tuple[Migration, ...]
    """Every migration file, in order (:func:`sandbox_infra.postgres.load_migrations`)."""
    namespace: pulumi.Input[str]
    """The platform namespace (an Output of the Platform component, so the Secrets wait for it)."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What the Secrets wait for besides the records (the Platform component, which creates their namespace)."""


class Database(pulumi.ComponentResource):
    """The platform database and everything that makes it usable by the platform's services.

    ``opts.providers`` carries the Kubernetes provider (for the Secrets) and, when the roles are managed,
    the pulumi-postgresql provider of :func:`admin_provider`."""

    secrets: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:database:Database", name, None, opts)
        plan = args.plan
        server = Server(plan.host, plan.port, plan.name, plan.ssl_mode)
        child = pulumi.ResourceOptions(parent=self)

        def login(kind: str, user: pulumi.Input[str]) -> pulumi.Output[dict[str, Any]]:
            return pulumi.Output.secret(
                pulumi.Output.all(user, args.passwords[kind]).apply(
                    lambda v: {"user": v[0], "password": v[1], "setting": password_setting(kind)}
                )
            )

        # The first database resource each chain waits on: the managed roles and privileges, or the proof
        # that the roles a DBA prepared log in (a wrong password stops everything before any change).
        ready: list[pulumi.Resource]
        if plan.roles_managed:
            managed = ManagedRoles(f"{name}-roles", plan, args.passwords, opts=child)
            ready = [managed]
            migrator: pulumi.Input[str] = managed.migrator_name
        else:
            logins = pulumi.Output.from_input({kind: login(kind, plan.roles.name(kind)) for kind in SERVICES})
            ready = [ServiceLogins(f"{name}-logins", server=server, logins=logins, opts=child)]
            migrator = plan.roles.migrator
        migrator_login = login(MIGRATOR, migrator)

        previous: list[pulumi.Resource] = ready
        for migration in args.migrations:
            previous = [
                SchemaMigration(
                    f"{name}-migration-{migration.id}",
                    migration=migration,
                    server=server,
                    login=migrator_login,
                    owner=plan.roles.owner,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
                )
            ]
        records = RosterRecords(
            f"{name}-records",
            records=plan.records.to_inputs(),
            server=server,
            login=migrator_login,
            owner=plan.roles.owner,
            opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
        )

        # A service gets its credentials once the schema it works on is there.
        self.secrets = {}
        for kind in SERVICES:
            role = plan.roles.name(kind)
            password: pulumi.Output[str] = pulumi.Output.secret(args.passwords[kind])
            url = password.apply(lambda p, r=role: plan.url(r, p))  # type: ignore[misc]
            metadata: k8s.meta.v1.ObjectMetaArgsDict = {
                "name": secret_name(kind),
                "namespace": args.namespace,
                "labels": naming.labels(name="database", instance=name, component=f"database-{kind}"),
                "annotations": naming.object_annotations(force=True),
            }
            secret = k8s.core.v1.Secret(
                f"{name}-secret-{kind}",
                metadata=metadata,
                type="Opaque",
                string_data={
                    "url": url,
                    "host": plan.host,
                    "port": str(plan.port),
                    "database": plan.name,
                    "user": role,
                    "password": password,
                    "sslmode": plan.ssl_mode,
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[records, *args.depends_on]),
            )
            self.secrets[kind] = secret.metadata.name
        self.register_outputs({"database": plan.name, "secrets": self.secrets})


def admin_provider(plan: DatabasePlan, password: pulumi.Input[str]) -> postgresql.Provider:
    """The pulumi-postgresql provider that creates the managed roles, as ``databaseAdminRole``: pass it to
    :class:`Database` in ``opts.providers`` with the Kubernetes provider."""
    return postgresql.Provider(
        "postgresql",
        host=plan.host,
        port=plan.port,
        username=plan.admin_role,
        password=pulumi.Output.secret(password),
        sslmode=plan.ssl_mode,
        database="postgres",
        superuser=False,  # a managed server's administrator is not a superuser
        connect_timeout=10,
    )


class ManagedRoles(pulumi.ComponentResource):
    """The roles, the database, the schema and the privileges, created with pulumi-postgresql.

    Its provider plugin cannot be built on the development machine (docs/toolchain.md): this part is
    exercised under Pulumi's mocks only (tests/unit/test_database.py), against the same privilege table
    the DBA script renders and the integration tests check for real."""

    migrator_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        plan: DatabasePlan,
        passwords: Mapping[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("sandbox-infra:database:ManagedRoles", name, None, opts)
        roles = plan.roles
        # The pulumi-postgresql provider comes from the parent's providers (see admin_provider).
        child = pulumi.ResourceOptions(parent=self)

        owner = postgresql.Role(f"{name}-owner", name=roles.owner, login=False, opts=child)
        logins: dict[str, postgresql.Role] = {}
        for kind in (MIGRATOR, *SERVICES):
            logins[kind] = postgresql.Role(
                f"{name}-{kind}",
                name=roles.name(kind),
                login=True,
                password=pulumi.Output.secret(passwords[kind]),
                # The migrator acts as the owner, so everything it creates belongs to the owner.
                roles=[owner.name] if kind == MIGRATOR else [],
                opts=child,
            )
        database = postgresql.Database(
            f"{name}-database",
            name=plan.name,
            owner=owner.name,
            # Dropping the database would drop every record: only a person does that, by hand.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True)),
        )
        schema = postgresql.Schema(
            f"{name}-schema", name=SCHEMA, database=database.name, owner=owner.name, if_not_exists=True, opts=child
        )
        privileges: list[pulumi.CustomResource] = [
            # Nobody but the roles below may connect.
            postgresql.Grant(
                f"{name}-public-database",
                database=database.name,
                role="public",
                object_type="database",
                privileges=[],
                opts=child,
            )
        ]
        for kind in SERVICES:
            role = logins[kind].name
            privileges.append(
                postgresql.Grant(
                    f"{name}-{kind}-database",
                    database=database.name,
                    role=role,
                    object_type="database",
                    privileges=["CONNECT"],
                    opts=child,
                )
            )
            privileges.append(
                postgresql.Grant(
                    f"{name}-{kind}-schema",
                    database=database.name,
                    schema=schema.name,
                    role=role,
                    object_type="schema",
                    privileges=["USAGE"],
                    opts=child,
                )
            )
        for p in PRIVILEGES:
            role = logins[p.role].name
            common: dict[str, Any] = {
                "database": database.name,
                "schema": schema.name,
                "role": role,
                "object_type": p.object_type,
                "privileges": list(p.privileges),
            }
            # On what exists (an empty objects list means all of them) ...
            privileges.append(postgresql.Grant(f"{name}-{p.role}-{p.object_type}s", objects=[], **common, opts=child))
            # ... and on what the owner creates later, in a later migration.
            privileges.append(
                postgresql.DefaultPrivileges(
                    f"{name}-{p.role}-{p.object_type}s-default", owner=owner.name, **common, opts=child
                )
            )
        # The migrator's name, unknown until its role, the database and every privilege exist: a preview that
        # creates them does not try to log in yet (see database_resources), and the migrations wait for them.
        created: list[pulumi.CustomResource] = [logins[MIGRATOR], database, schema, *privileges]
        self.migrator_name = pulumi.Output.all(logins[MIGRATOR].name, *(r.id for r in created)).apply(
            lambda v: str(v[0])
        )
        self.register_outputs({"database": database.name, "migrator": self.migrator_name})
