"""Released migrations are never edited: each one's SHA-256 is pinned here.

A database that applied a migration never runs it again, so an edit would silently make databases differ
(yoyo records migrations by id, not by content). Adding a migration means adding its pin below, in the
same change; changing a pin means editing a released migration, which review must refuse: write a new
migration instead. A stack that applied the old text refuses it too, in its preview.
"""

from __future__ import annotations

import re

from sandbox_infra.postgres import load_migrations

RELEASED = {
    "0001.sandbox-schema": "c980d904e9fe66b71824a5152265d28b83617a6850319c9470f7b3108d4e7bc1",
}


def test_released_migrations_are_never_edited() -> None:
    current = {m.id: m.sha256 for m in load_migrations()}
    assert {i: current.get(i) for i in RELEASED} == RELEASED


def test_every_migration_is_pinned() -> None:
    """A new migration is pinned in the change that adds it (it is released when that change merges)."""
    assert [m.id for m in load_migrations()] == list(RELEASED)


def test_migrations_are_numbered_in_order() -> None:
    """yoyo applies migrations by file name: four digits, a dot, a name; no two with one number."""
    ids = [m.id for m in load_migrations()]
    assert all(re.fullmatch(r"\d{4}\.[a-z0-9-]+", i) for i in ids), ids
    numbers = [int(i[:4]) for i in ids]
    assert numbers == list(range(1, len(ids) + 1))
