"""The crash soak's own logic (tests/integration/crash.py): which process is which, and rosters that stay
valid and safe however long it runs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from sandbox_infra.offboarding import removals
from sandbox_infra.roster import load_roster
from sandbox_infra.settings import StackSettings
from sandbox_infra.source import load_yaml
from tests.integration.crash import MAX_FREELANCERS, Roster, kind_of

SETTINGS = StackSettings(api_key_present=True)


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["pulumi", "--non-interactive", "up", "--yes", "--stack", "crash-client-x"], "engine"),
        (["/cache/bin/pulumi-abc/pulumi-language-python", "127.0.0.1:39071"], "language-host"),
        (["/venv/bin/python3", "/cache/bin/pulumi-abc/pulumi-language-python-exec", "--monitor", "x"], "program"),
        (["/home/plugins/resource-kubernetes-v4.25.0/pulumi-resource-kubernetes", "127.0.0.1:1"], "provider"),
        (["/venv/bin/python", "-u", "policies", "127.0.0.1:39071"], "policy-pack"),
        (["pulumi", "stack", "export", "--stack", "crash"], None),
        (["python", "-m", "sandbox_infra", "up", "--all"], None),
        ([], None),
    ],
)
def test_processes_of_an_update_are_told_apart(argv: list[str], kind: str | None) -> None:
    assert kind_of(argv) == kind


def test_an_evolving_roster_stays_valid_and_never_removes_anything(tmp_path: Path) -> None:
    rng = random.Random(7)
    roster = Roster(["0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11", "083cfb9d-4274-45dd-b4a8-bb1b0e883cf5"])
    for _ in range(4):
        roster.add(rng)
    kinds: set[str] = set()
    path, previous = tmp_path / "roster.yaml", tmp_path / "previous.yaml"
    for _ in range(60):
        previous.write_text(yaml.safe_dump(roster.document(), sort_keys=False))
        kinds |= {change.split()[0] for change in roster.evolve(rng)}
        path.write_text(yaml.safe_dump(roster.document(), sort_keys=False))
        checked = load_roster(path, SETTINGS)  # raises InputError on an invalid roster
        data, positions = load_yaml(previous)
        errors, _ = removals(data, positions, checked)
        assert errors == []  # nothing dropped without archiving first: the orchestrator would refuse the run
        live = [s for _, s in roster.sandboxes() if s.get("state", "active") != "archived"]
        assert len(live) >= 2 and len(roster.freelancers) <= MAX_FREELANCERS
    assert kinds == {"add", "tier", "suspend", "resume", "archive"}
