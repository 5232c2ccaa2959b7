"""Every input the program registers for the example roster, in wire form, pinned by a snapshot.

The URN snapshot (test_program.py) catches renames; this one catches any change to what a resource asks
the cluster for: a key spelled differently, a value changed, a field dropped. The inputs are recorded as
the resource monitor receives them, i.e. after the SDK has translated typed ``*ArgsDict`` keys
(snake_case) to the Kubernetes API's camelCase, so a refactor between dict literals and typed inputs that
changes nothing on the wire leaves this snapshot untouched.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import program
from sandbox_infra.plan import ALL_SLICES, build_plan
from sandbox_infra.roster import load_roster
from sandbox_infra.settings import StackSettings
from tests.unit.mocks import Recorder, run_program

SNAPSHOT = Path(__file__).parent / "snapshots" / "example-roster-inputs.json"
SETTINGS = StackSettings(api_key_present=True)


class _WireInputs(Recorder):
    """Mocks that also keep each resource's inputs exactly as the monitor received them."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        key = (args.typ, args.name)
        # (type, logical name) must identify a resource, or one registration would hide another.
        assert key not in self.inputs, f"registered twice: {key}"
        # A deep copy: the echoed outputs must not alias (and later alter) what was recorded.
        self.inputs[key] = copy.deepcopy(dict(args.inputs))
        return super().new_resource(args)


def _example_inputs(example_roster: Path) -> str:
    roster = load_roster(example_roster, SETTINGS)

    def body() -> None:
        provider = k8s.Provider("kubernetes")
        keys = {c.id: pulumi.Output.secret("test-key") for c in roster.clients}
        program.build(build_plan(roster, SETTINGS), ALL_SLICES, keys, provider)

    capture = _WireInputs()
    run_program(body, recorder=capture)
    resources = [
        {"type": typ, "name": name, "inputs": capture.inputs[typ, name]} for typ, name in sorted(capture.inputs)
    ]
    # Secrets stay in their wire wrapper ({"4dabf181...": "1b470612...", "value": ...}), so a value losing its
    # secretness shows here too; default=str only guards against any SDK object JSON does not know.
    return json.dumps(resources, indent=2, sort_keys=True, default=str) + "\n"


def test_inputs_snapshot(example_roster: Path) -> None:
    """Any change to a registered input must be deliberate: UPDATE_SNAPSHOTS=1 to accept one."""
    actual = _example_inputs(example_roster)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(actual)
    # Line by line, so a failure shows which resource and which key changed.
    assert actual.splitlines() == SNAPSHOT.read_text().splitlines(), (
        "registered inputs changed: UPDATE_SNAPSHOTS=1 if intended"
    )
