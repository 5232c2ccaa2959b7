"""Every input the program registers for the example roster, in wire form, pinned by a snapshot.

The URN snapshot (test_program.py) catches renames; this one catches any change to what a resource asks
the cluster for: a key spelled differently, a value changed, a field dropped. The inputs are recorded as
the resource monitor receives them, i.e. after the SDK has translated typed ``*ArgsDict`` keys
(snake_case) to the Kubernetes API's camelCase, so a refactor between dict literals and typed inputs that
changes nothing on the wire leaves this snapshot untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.unit.mocks import run_example

SNAPSHOT = Path(__file__).parent / "snapshots" / "example-roster-inputs.json"


def _example_inputs(example_roster: Path) -> str:
    wire = run_example(example_roster).wire
    # A provider's inputs are filled from the environment it runs in (KUBECONFIG, PULUMI_K8S_*), not by the
    # program: they are left out, or the snapshot would depend on the shell that runs the tests.
    resources = [
        {"type": typ, "name": name, "inputs": wire[typ, name]}
        for typ, name in sorted(wire)
        if not typ.startswith("pulumi:providers:")
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
