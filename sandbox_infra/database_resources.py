"""The Pulumi dynamic resources that make the database part of ``pulumi preview`` and ``up``.

A dynamic resource's provider runs in a Python process the engine starts, so these work with the real engine
here, where pulumi-postgresql's plugin cannot be built. Each one:

- ``check`` logs in (unless the server is being created in the same run, and so unknown yet) and fails with
  one line naming the setting to fix when it cannot, before anything changes;
- ``diff`` asks the database what is pending, so a preview shows it (a migration not applied yet is a
  ``create``; records that differ are an ``update`` listing the rows);
- ``read`` (``--refresh``) reads the database back, so a recreated database is migrated again;
- ``delete`` changes nothing: a migration is never rolled back and records are never deleted.

Passwords are inputs marked secret, stored encrypted in the state; outputs repeat them (a later ``diff``,
``read`` and ``delete`` only get outputs) and are marked secret too.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from sandbox_infra import postgres
from sandbox_infra.postgres import DatabaseError, Login, Migration, Server

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""How a dynamic provider receives a value not known until the update (pulumi.runtime.rpc.UNKNOWN)."""


def _known(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_known(v) for v in value.values())
    if isinstance(value, list):
        return all(_known(v) for v in value)
    return bool(value != UNKNOWN)


def _server(props: dict[str, Any]) -> Server:
    return Server.from_inputs(props["server"])


def _login(props: dict[str, Any]) -> Login:
    return Login.from_inputs(props["login"])


def _check(news: dict[str, Any], probe: Any) -> CheckResult:
    """Run ``probe()`` when every connection input is known; a :class:`DatabaseError` is a check failure
    (the engine prints ``resource '<name>' has a problem: <message>`` and changes nothing)."""
    if not _known({k: news.get(k) for k in ("server", "login", "logins", "owner")}):
        return CheckResult(news, [])
    try:
        problem = probe()
    except DatabaseError as exc:
        problem = f"{exc}; nothing was changed"
    return CheckResult(news, [CheckFailure("", problem)] if problem else [])


# ---- one migration --------------------------------------------------------------------------------------


class MigrationProvider(ResourceProvider):
    """Applies one migration (inputs: ``migration`` id, ``sql``, ``sha256``, ``server``, ``login``, ``owner``)."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        def probe() -> str | None:
            applied = postgres.applied_migrations(_server(news), _login(news), news["owner"])
            edited = olds.get("sha256") not in (None, news["sha256"])
            if edited and news["migration"] in applied:
                return (
                    f"migration {news['migration']} was changed after it was applied; a released migration is "
                    "never edited: restore it and add a new migration (docs/database.md)"
                )
            return None

        return _check(news, probe)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("migration", "sha256", "server", "login", "owner")
        if any(olds.get(k) != news.get(k) for k in keys) or not _known(news):
            return DiffResult(changes=True)
        applied = postgres.applied_migrations(_server(news), _login(news), news["owner"])
        return DiffResult(changes=news["migration"] not in applied)

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        migration = Migration(props["migration"], props["sql"])
        postgres.apply_migrations(_server(props), _login(props), props["owner"], (migration,))
        return dict(props)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["migration"], self._apply(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        applied = postgres.applied_migrations(_server(props), _login(props), props["owner"])
        # Not recorded any more (a recreated database): gone from the state, so the update applies it again.
        return ReadResult(id_, props) if props["migration"] in applied else ReadResult("", {})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """A migration is never rolled back: removing its file from the program changes nothing."""


class SchemaMigration(Resource, module="database", name="Migration"):
    """One migration file, applied once, in order (each depends on the one before)."""

    def __init__(
        self,
        name: str,
        *,
        migration: Migration,
        server: Server,
        login: pulumi.Input[dict[str, Any]],
        owner: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "migration": migration.id,
            "sql": migration.sql,
            "sha256": migration.sha256,
            "server": server.to_inputs(),
            "login": login,
            "owner": owner,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["login"])
        super().__init__(MigrationProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))


# ---- the roster's records -------------------------------------------------------------------------------


class RecordsProvider(ResourceProvider):
    """Makes the clients, freelancers and sandbox_configs rows follow the roster (``records`` input)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        def probe() -> None:
            postgres.check_login(_server(news), _login(news))

        return _check(news, probe)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("records", "server", "login", "owner")
        changed = any(olds.get(k) != news.get(k) for k in keys) or bool(olds.get("strays"))
        return DiffResult(changes=changed or not _known(news))

    def _write(self, props: dict[str, Any]) -> dict[str, Any]:
        counts = postgres.write_records(_server(props), _login(props), props["owner"], props["records"])
        return {**props, "strays": 0, "lastWrite": counts}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("records", self._write(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._write(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        current = postgres.read_records(_server(props), _login(props), props["owner"], props["records"])
        strays = current.pop("strays")
        return ReadResult(id_, {**props, "records": current, "strays": strays})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Records are never deleted (sessions and usage refer to them); a person archives them."""


class RosterRecords(Resource, module="database", name="Records"):
    """The rows that follow the roster, written in one transaction after the migrations."""

    def __init__(
        self,
        name: str,
        *,
        records: dict[str, Any],
        server: Server,
        login: pulumi.Input[dict[str, Any]],
        owner: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {"records": records, "server": server.to_inputs(), "login": login, "owner": owner}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["login"])
        super().__init__(RecordsProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))


# ---- the services' logins (roles a DBA prepared) --------------------------------------------------------


class LoginsProvider(ResourceProvider):
    """Proves that every service role logs in with the password the stack holds (``logins`` input: kind ->
    login), so a Secret never carries a password the server refuses."""

    def _probe(self, props: dict[str, Any]) -> None:
        for login in props["logins"].values():
            postgres.check_login(_server(props), Login.from_inputs(login))

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return _check(news, lambda: self._probe(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in ("server", "logins")))

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._probe(props)
        return CreateResult("logins", dict(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._probe(news)
        return UpdateResult(dict(news))


class ServiceLogins(Resource, module="database", name="Logins"):
    """The login check of the roles a DBA prepared (``databaseRoles: existing``)."""

    def __init__(
        self,
        name: str,
        *,
        server: Server,
        logins: pulumi.Input[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {"server": server.to_inputs(), "logins": logins}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["logins"])
        super().__init__(LoginsProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))
