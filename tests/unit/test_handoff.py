"""The plan the orchestrator hands to the stacks it runs: taken only for the exact roster and settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sandbox_infra import handoff, program
from sandbox_infra.environment import Environment, load_environment
from sandbox_infra.plan import PLATFORM_SLICE, Plan
from sandbox_infra.settings import StackSettings
from tests.unit.mocks import Recorder, run_program

ACME = "client-0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
STS = "kubernetes:apps/v1:StatefulSet"


@pytest.fixture
def environment(tmp_path: Path, example_roster: Path, monkeypatch: pytest.MonkeyPatch) -> Environment:
    """A project directory with the example roster and a default key, as the program's working directory."""
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  sandbox-infra:geminiApiKey:\n    secure: v1:not-real\n")
    (tmp_path / "roster.yaml").write_text(example_roster.read_text())
    monkeypatch.chdir(tmp_path)
    return load_environment("dev", tmp_path)


def _run_acme_stack(monkeypatch: pytest.MonkeyPatch, plan_dir: Path | None) -> Recorder:
    """The acme client stack's program, with the config the orchestrator generates for it."""
    if plan_dir is None:
        monkeypatch.delenv(handoff.PLAN_DIR_ENV, raising=False)
    else:
        monkeypatch.setenv(handoff.PLAN_DIR_ENV, str(plan_dir))
    config = {
        "sandbox-infra:roster": "roster.yaml",
        "sandbox-infra:environment": "dev",
        "sandbox-infra:slice": ACME,
        "sandbox-infra:geminiApiKey": "sk-test-not-real",
    }
    return run_program(program.main, config=config, secret_keys=["sandbox-infra:geminiApiKey"])


def _without_sandboxes(plan: Plan) -> Plan:
    """A plan that differs visibly from the roster's: acme's tenant with no sandbox."""
    group = plan.slice(ACME)
    assert group is not None
    tenants = tuple(dataclasses.replace(t, sandboxes=()) for t in group.tenants)
    return dataclasses.replace(plan, slices=(dataclasses.replace(group, tenants=tenants),))


def test_key_depends_on_the_roster_bytes_and_the_shared_settings_only() -> None:
    settings = StackSettings(api_key_present=True, client_api_keys_present=frozenset({"b", "a", "c"}))
    key = handoff.key("digest", settings)
    assert handoff.key("digest", dataclasses.replace(settings, slice=ACME, environment="dev")) == key
    assert handoff.key("digest", dataclasses.replace(settings, client_api_keys_present=frozenset("cab"))) == key
    assert handoff.key("other", settings) != key
    assert handoff.key("digest", dataclasses.replace(settings, default_home_size="20Gi")) != key
    assert handoff.key("digest", dataclasses.replace(settings, api_key_present=False)) != key


def test_each_stack_gets_only_its_part(environment: Environment) -> None:
    plan = environment.plan(environment.load_roster())
    assert handoff.part(plan, PLATFORM_SLICE) == Plan(plan.platform, ())
    acme = handoff.part(plan, ACME)
    assert [s.id for s in acme.slices] == [ACME]
    # Not the platform's services nor the roster's database records: a client stack declares neither.
    assert (acme.platform.database, acme.platform.services) == (None, None)
    assert acme.platform.namespace == plan.platform.namespace


def test_a_client_stack_declares_the_same_with_its_part_as_with_the_whole_plan(
    environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster, key = environment.load_roster_keyed()
    assert key is not None
    planned_itself = _run_acme_stack(monkeypatch, None).wire
    with handoff.plan_directory() as plan_dir:
        handoff.write(plan_dir, environment.plan(roster), key, [ACME])
        handed = _run_acme_stack(monkeypatch, plan_dir).wire
    assert handed == planned_itself  # every resource's inputs as the engine receives them
    assert any(typ == STS for typ, _ in handed)


def test_the_program_declares_the_handed_plan(
    environment: Environment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    roster, key = environment.load_roster_keyed()
    assert key is not None
    full = environment.plan(roster)
    assert any(True for _ in full.slice(ACME).sandboxes())  # type: ignore[union-attr]
    with handoff.plan_directory() as plan_dir:
        assert plan_dir.stat().st_mode & 0o077 == 0
        handoff.write(plan_dir, _without_sandboxes(full), key, [ACME])
        # The key matches: the program takes the handed plan (recognisable: no sandbox) and parses nothing.
        assert _run_acme_stack(monkeypatch, plan_dir).by_type(STS) == []
        # The roster changed after the orchestrator planned it: the program plans the file itself.
        with (tmp_path / "roster.yaml").open("a") as f:
            f.write("# edited\n")
        assert _run_acme_stack(monkeypatch, plan_dir).by_type(STS) != []
    assert not plan_dir.exists()


def test_without_a_handoff_or_for_other_settings_the_program_plans_itself(
    environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster, key = environment.load_roster_keyed()
    assert key is not None
    full = environment.plan(roster)
    assert _run_acme_stack(monkeypatch, None).by_type(STS) != []
    with handoff.plan_directory() as plan_dir:
        other = handoff.key(handoff.file_digest(Path("roster.yaml")) or "", StackSettings(default_home_size="20Gi"))
        handoff.write(plan_dir, _without_sandboxes(full), other, [ACME])
        assert _run_acme_stack(monkeypatch, plan_dir).by_type(STS) != []
        # Nor is a file for another slice taken.
        (plan_dir / f"{ACME}.pickle").rename(plan_dir / "client-other.pickle")
        assert _run_acme_stack(monkeypatch, plan_dir).by_type(STS) != []
