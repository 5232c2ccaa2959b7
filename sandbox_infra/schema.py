"""The roster's JSON Schema, generated from the models so editors validate while people type a roster PR."""

from __future__ import annotations

from typing import Any

from sandbox_infra.roster import Roster

SCHEMA_ID = "https://platform.com/schemas/sandbox-infra/roster.schema.json"


def roster_schema() -> dict[str, Any]:
    schema = Roster.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "sandbox-infra roster"
    return schema
