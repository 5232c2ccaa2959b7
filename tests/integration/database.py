"""A database of its own for each test, on the local PostgreSQL of `make cluster-up`.

The local server's administrator (``DATABASE_URL``: CREATEDB and CREATEROLE, no superuser, like a managed
server's) runs the script a DBA runs (``python -m sandbox_infra database-script``) for a database named
``t_<random>``, with its five roles ``t_<random>_<kind>``, sets random passwords, and drops all of it after.
Other people's tests share the server: nothing here touches a database or role it did not create.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql

from sandbox_infra.database_plan import MIGRATOR, ROLE_KINDS, SERVICES, DatabaseRoles, dba_script
from sandbox_infra.postgres import Login, Server


def admin_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.fail(
            'database tests need DATABASE_URL: run them with `make test` (or eval "$(make -s env)")', pytrace=False
        )
    return url


@dataclass
class ScratchDatabase:
    """A database prepared as for ``databaseRoles: existing``, with a password for each login role."""

    name: str
    roles: DatabaseRoles
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def server(self) -> Server:
        info = psycopg.conninfo.conninfo_to_dict(admin_url())
        return Server(str(info["host"]), int(str(info["port"])), self.name, "disable")

    def login(self, kind: str = MIGRATOR) -> Login:
        return Login(self.roles.name(kind), self.passwords[kind], f"sandbox-infra:databasePasswords.{kind}")

    def connect(self, kind: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        """A connection as a role of this database (``kind``), or as the server's administrator."""
        if kind is None:
            return psycopg.connect(admin_url(), dbname=self.name, **kwargs)
        server = self.server
        return psycopg.connect(
            host=server.host,
            port=server.port,
            dbname=self.name,
            user=self.roles.name(kind),
            password=self.passwords[kind],
            **kwargs,
        )


def set_password(conn: psycopg.Connection[Any], role: str, password: str) -> None:
    """ALTER ROLE ... PASSWORD with a SCRAM verifier computed here (the server never sees the password)."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


def run_dba_script(name: str) -> None:
    """What a DBA does: ``psql -f`` the script, as the server's administrator."""
    subprocess.run(
        ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", admin_url()],
        input=dba_script(name),
        capture_output=True,
        text=True,
        check=True,
    )


@contextmanager
def scratch_database(*, prepared: bool = True) -> Iterator[ScratchDatabase]:
    """A fresh database and roles (``prepared``: by the DBA script, with passwords), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    database = ScratchDatabase(name, DatabaseRoles.of(name))
    try:
        if prepared:
            run_dba_script(name)
            with psycopg.connect(admin_url(), autocommit=True) as conn:
                for kind in (MIGRATOR, *SERVICES):
                    database.passwords[kind] = secrets.token_urlsafe(18)
                    set_password(conn, database.roles.name(kind), database.passwords[kind])
        yield database
    finally:
        drop(name)


def drop(name: str) -> None:
    """Drop the database ``name`` and its roles, if they exist (only names this module made)."""
    assert name.startswith("t_"), name
    roles = DatabaseRoles.of(name)
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for kind in reversed(ROLE_KINDS):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(roles.name(kind))))
