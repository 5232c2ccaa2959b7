"""The committed JSON Schema is what editors validate roster pull requests with: it must match the models."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox_infra.schema import roster_schema


def test_committed_schema_is_current(repo: Path) -> None:
    committed = json.loads((repo / "roster.schema.json").read_text())
    assert committed == roster_schema(), "regenerate: python -m sandbox_infra schema > roster.schema.json"


def test_schema_rejects_unknown_keys() -> None:
    schema = roster_schema()
    assert schema["additionalProperties"] is False
    assert all(d.get("additionalProperties") is False for d in schema["$defs"].values() if d.get("type") == "object")


def test_example_roster_points_editors_at_the_schema(repo: Path) -> None:
    assert (repo / "roster.yaml").read_text().startswith("# yaml-language-server: $schema=roster.schema.json")
