"""The plan, the slices and change detection: which stacks a roster change touches, as a table of cases."""

from __future__ import annotations

import gc
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from sandbox_infra.changes import BaseError, load_base, touched
from sandbox_infra.environment import Environment, load_environment
from sandbox_infra.plan import PLATFORM_SLICE, Plan, build_plan, stack_name
from sandbox_infra.roster import Roster, validate
from sandbox_infra.settings import SettingsError, StackSettings
from sandbox_infra.source import Positions

SETTINGS = StackSettings(api_key_present=True)
ACME = "0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
GLOBEX = "083cfb9d-4274-45dd-b4a8-bb1b0e883cf5"
INITECH = "b38cf925-1979-4799-93b8-ea79b0712d0c"
ADA = "e0d60578-9d7a-46c3-89f8-a131aaa11434"
DENNIS = "26d36db5-bedd-4711-bf82-75ae035d432b"
Edit = Callable[[dict[str, Any]], None]


def plan_of(data: dict[str, Any], settings: StackSettings = SETTINGS) -> Plan:
    return build_plan(validate(data, Positions("roster.yaml"), settings), settings)


@pytest.fixture
def example(example_roster: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(example_roster.read_text())
    return data


def freelancer(data: dict[str, Any], fid: str) -> dict[str, Any]:
    return next(f for f in data["freelancers"] if f["id"] == fid)


def sandbox_for(data: dict[str, Any], fid: str, client: str) -> dict[str, Any]:
    return next(s for s in freelancer(data, fid)["sandboxes"] if s["client"] == client)


def add_freelancer(data: dict[str, Any]) -> None:
    data["freelancers"].append(
        {
            "id": "7d1f3c2a-1111-4aaa-8bbb-0123456789ab",
            "email": "new@example.com",
            "sandboxes": [{"client": GLOBEX, "tier": "basic"}],
        }
    )


def add_client(data: dict[str, Any]) -> None:
    data["clients"].append({"id": "5c7e9a10-2222-4ccc-9ddd-0123456789ab", "name": "Umbrella"})


def group_two_clients(data: dict[str, Any]) -> None:
    for client in data["clients"][:2]:
        client["stack"] = "small"


CASES: list[tuple[str, Edit, set[str]]] = [
    ("nothing", lambda d: None, set()),
    ("one more freelancer", add_freelancer, {f"client-{GLOBEX}"}),
    ("tier change", lambda d: sandbox_for(d, DENNIS, INITECH).update(tier="standard"), {f"client-{INITECH}"}),
    ("suspend", lambda d: sandbox_for(d, ADA, ACME).update(state="suspended"), {f"client-{ACME}"}),
    ("archive", lambda d: sandbox_for(d, ADA, GLOBEX).update(state="archived"), {f"client-{GLOBEX}"}),
    (
        "volume size",
        lambda d: sandbox_for(d, DENNIS, INITECH).update(storage={"workspace": "30Gi"}),
        {f"client-{INITECH}"},
    ),
    (
        "image tag",
        lambda d: sandbox_for(d, ADA, ACME).update(image=f"2026.12.01@sha256:{'1' * 64}"),
        {f"client-{ACME}"},
    ),
    ("client renamed", lambda d: d["clients"][0].update(name="Acme Inc"), {f"client-{ACME}"}),
    # a freelancer's email and display name are not declared anywhere in the cluster
    ("email changed", lambda d: freelancer(d, ADA).update(email="ada@example.org"), set()),
    ("display name", lambda d: freelancer(d, ADA).update(name="Ada K."), set()),
    ("freelancers reordered", lambda d: d["freelancers"].reverse(), set()),
    ("new client without sandboxes", add_client, {"client-5c7e9a10-2222-4ccc-9ddd-0123456789ab"}),
    ("two clients grouped", group_two_clients, {"small"}),
]


@pytest.mark.parametrize(("edit", "expected"), [(e, x) for _, e, x in CASES], ids=[n for n, _, _ in CASES])
def test_touched_stacks(example: dict[str, Any], edit: Edit, expected: set[str]) -> None:
    base = plan_of(example)
    edit(example)
    assert set(touched(base, plan_of(example)).slices) == expected


def test_the_reason_names_what_changed(example: dict[str, Any]) -> None:
    base = plan_of(example)
    sandbox_for(example, DENNIS, INITECH).update(tier="standard")
    add_freelancer(example)
    change = touched(base, plan_of(example))
    assert change.slices[f"client-{INITECH}"] == "sandbox 26d36db5 tier, resources"
    assert change.slices[f"client-{GLOBEX}"] == "sandbox 7d1f3c2a added"


def test_a_settings_change_touches_only_what_it_reaches(example: dict[str, Any]) -> None:
    base = plan_of(example)
    assert set(
        touched(base, plan_of(example, StackSettings(api_key_present=True, pod_security_version="v1.35"))).slices
    ) == {
        PLATFORM_SLICE,
        f"client-{ACME}",
        f"client-{GLOBEX}",
        f"client-{INITECH}",
    }
    new_image = StackSettings(
        api_key_present=True, code_server_image=f"registry.platform.com/mirror/code-server:4.106.0@sha256:{'0' * 64}"
    )
    assert PLATFORM_SLICE not in touched(base, plan_of(example, new_image)).slices


def test_without_a_base_or_with_a_reason_everything_is_touched(example: dict[str, Any]) -> None:
    plan = plan_of(example)
    assert len(touched(None, plan).slices) == 4
    assert set(touched(plan, plan, everything="program changed").slices.values()) == {"program changed"}


def test_a_removed_slice_is_listed_not_touched(example: dict[str, Any]) -> None:
    base = plan_of(example)
    example["clients"] = [c for c in example["clients"] if c["id"] != INITECH]
    example["freelancers"] = [f for f in example["freelancers"] if all(s["client"] != INITECH for s in f["sandboxes"])]
    change = touched(base, plan_of(example))
    assert change.removed == (f"client-{INITECH}",)
    assert f"client-{INITECH}" not in change.slices


def test_slices_and_stack_names(example: dict[str, Any]) -> None:
    group_two_clients(example)
    plan = plan_of(example)
    assert [(s.id, [str(t.client_id) for t in s.tenants]) for s in plan.slices] == [
        (f"client-{INITECH}", [INITECH]),
        ("small", [GLOBEX, ACME]),
    ]
    assert stack_name("dev", PLATFORM_SLICE) == "dev"
    assert stack_name("prod", "small") == "prod-small"


@given(st.lists(st.uuids(), max_size=50))
def test_ids_sort_by_number_as_by_their_text(ids: list[UUID]) -> None:
    """The plan orders clients, sandboxes and records by ``UUID.int`` (cheaper than formatting each id):
    the same order as the canonical text's, which is the order people and the database see."""
    assert sorted(ids, key=lambda u: u.int) == sorted(ids, key=str)


def test_plan_computes_each_fact_once(example: dict[str, Any]) -> None:
    """Volume sizes, images and budgets are in the plan; the quota is their sum."""
    plan = plan_of(example)
    initech = next(t for t in plan.tenants() if str(t.client_id) == INITECH)
    dennis = next(s for s in initech.sandboxes if str(s.freelancer_id) == DENNIS)
    assert (dennis.workspace.name, dennis.workspace.size, dennis.workspace.storage_class) == (
        f"workspace-{DENNIS}",
        "20Gi",
        "fast-ssd",
    )
    assert dennis.home.size == "10Gi"
    assert dennis.gemini_cli_image == f"registry.platform.com/sandboxes/gemini-cli:{StackSettings().gemini_cli_tag}"
    assert dennis.gemini_cli_image.split("@")[1].startswith("sha256:")
    assert initech.quota.hard()["requests.storage"] == "150Gi"


# ---- the environment and its stacks' config ------------------------------------------------------------

ENV_FILE = f"""\
encryptionsalt: v1:abc:def
config:
  sandbox-infra:geminiApiKey:
    secure: v1:default-key-ciphertext
  sandbox-infra:clientGeminiApiKeys:
    {ACME}:
      secure: v1:acme-key-ciphertext
    {GLOBEX}:
      secure: v1:globex-key-ciphertext
  sandbox-infra:podSecurityVersion: v1.34
"""


@pytest.fixture
def project(tmp_path: Path, example_roster: Path) -> Path:
    (tmp_path / "Pulumi.dev.yaml").write_text(ENV_FILE)
    (tmp_path / "roster.yaml").write_text(example_roster.read_text())
    return tmp_path


def test_a_client_stack_gets_the_environment_config_and_its_slice(project: Path) -> None:
    environment = load_environment("dev", project)
    plan = environment.plan(environment.load_roster())
    acme = plan.slice(f"client-{ACME}")
    assert acme is not None
    path = environment.write_stack_file(acme)
    assert path.name == f"Pulumi.dev-client-{ACME}.yaml"
    written = yaml.safe_load(path.read_text())
    assert written["encryptionsalt"] == "v1:abc:def"
    config = written["config"]
    # every client's key, as ciphertext: the stack's program validates the whole roster
    assert config["sandbox-infra:clientGeminiApiKeys"] == {
        ACME: {"secure": "v1:acme-key-ciphertext"},
        GLOBEX: {"secure": "v1:globex-key-ciphertext"},
    }
    assert config["sandbox-infra:geminiApiKey"] == {"secure": "v1:default-key-ciphertext"}
    assert config["sandbox-infra:slice"] == f"client-{ACME}"
    assert config["sandbox-infra:environment"] == "dev"
    assert path.read_text().startswith("# Generated by `python -m sandbox_infra` from Pulumi.dev.yaml")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("Dev", ENV_FILE, "is not an environment name"),
        ("qa", ENV_FILE, "Pulumi.qa.yaml: no such settings file"),
        ("dev", ENV_FILE + "  sandbox-infra:slice: all\n", "set by the orchestrator"),
        ("dev", "- not a mapping\n", "expected a mapping with a 'config' mapping"),
    ],
)
def test_bad_environments_are_refused(project: Path, name: str, text: str, message: str) -> None:
    (project / "Pulumi.dev.yaml").write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_environment(name, project)


# ---- the base of a change: a file or a git revision ----------------------------------------------------


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=project,
        check=True,
        capture_output=True,
    )


def test_a_git_base_compares_rosters_and_touches_all_when_the_program_changed(project: Path) -> None:
    _git(project, "init", "-q")
    (project / "Pulumi.yaml").write_text("name: sandbox-infra\n")
    _git(project, "add", ".")
    _git(project, "commit", "-qm", "base")
    environment = load_environment("dev", project)
    roster = project / "roster.yaml"
    roster.write_text(
        roster.read_text().replace(
            "tier: basic\n        storage: {workspace: 20Gi}", "tier: standard\n        storage: {workspace: 20Gi}"
        )
    )
    base = load_base(environment, "HEAD")
    assert base.everything is None and base.name == "HEAD:roster.yaml"
    assert set(touched(base.plan, environment.plan(environment.load_roster())).slices) == {f"client-{INITECH}"}
    (project / "Pulumi.yaml").write_text("name: sandbox-infra\ndescription: changed\n")
    assert load_base(environment, "HEAD").everything == "Pulumi.yaml changed since HEAD"


def test_a_base_that_is_neither_is_refused(project: Path) -> None:
    environment = load_environment("dev", project)
    with pytest.raises(BaseError, match="neither a roster file nor a git revision"):
        load_base(environment, "no-such-thing")


def test_an_invalid_base_touches_everything(project: Path) -> None:
    environment = load_environment("dev", project)
    old = project / "old.yaml"
    old.write_text("version: 1\nclients:\n  - id: nope\n    name: X\n")
    base = load_base(environment, str(old))
    assert base.plan is None and base.everything == f"{old} is not a valid roster today"


# ---- the command line: `plan` needs neither the engine nor a cluster -----------------------------------


def _cli(project: Path, *args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from sandbox_infra.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--project-dir", str(project)])
    return code, out.getvalue(), err.getvalue()


def test_plan_lists_the_touched_stacks(project: Path) -> None:
    base = project / "base.yaml"
    base.write_text((project / "roster.yaml").read_text())
    data = yaml.safe_load(base.read_text())
    sandbox_for(data, DENNIS, INITECH).update(tier="standard")
    (project / "roster.yaml").write_text(yaml.safe_dump(data))
    code, out, _ = _cli(project, "plan", "--env", "dev", "--base", str(base))
    assert code == 0
    assert out == f"dev: 1 of 4 stacks touched\n  dev-client-{INITECH}: sandbox 26d36db5 tier, resources\n"
    code, out, _ = _cli(project, "plan", "--env", "dev", "--json", "--shard", "2/2")
    # sorted: dev, dev-client-083c… (Globex), dev-client-0b0e… (Acme), dev-client-b38c… (Initech)
    assert code == 0 and set(yaml.safe_load(out)["stacks"]) == {f"dev-client-{GLOBEX}", f"dev-client-{INITECH}"}


def test_a_command_leaves_the_garbage_collector_as_it_found_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI plans with the cyclic collector off (a quarter of the CPU at 10,000 freelancers); a caller in
    the same process (these tests) gets it back on, with nothing left frozen, even when the command fails."""
    states: list[bool] = []
    real_plan = Environment.plan

    def planned(self: Environment, roster: Roster) -> Plan:
        states.append(gc.isenabled())
        return real_plan(self, roster)

    monkeypatch.setattr(Environment, "plan", planned)
    assert _cli(project, "plan", "--env", "dev")[0] == 0
    assert _cli(project, "plan", "--env", "nosuch")[0] == 2
    assert states == [False]
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_plan_refuses_an_unsafe_change_and_a_bad_roster(project: Path) -> None:
    base = project / "base.yaml"
    base.write_text((project / "roster.yaml").read_text())
    data = yaml.safe_load(base.read_text())
    data["freelancers"] = [f for f in data["freelancers"] if f["id"] != DENNIS]
    (project / "roster.yaml").write_text(yaml.safe_dump(data))
    code, out, err = _cli(project, "plan", "--env", "dev", "--base", str(base))
    assert code == 1 and "set `state: archived` first" in out and "no stack was run" in err
    (project / "roster.yaml").write_text("version: 1\nclients:\n  - id: nope\n    name: X\n")
    code, out, err = _cli(project, "up", "--env", "dev")
    assert code == 1 and "roster.yaml:3:9: clients[0].id: malformed UUID 'nope'" in out and "no stack was run" in err


def test_usage_errors_exit_2(project: Path) -> None:
    assert _cli(project, "plan", "--env", "qa")[0] == 2
    assert _cli(project, "preview", "--env", "dev", "--shard", "3/2")[0] == 2
    assert _cli(project, "plan", "--env", "dev", "--base", "nowhere")[0] == 2


@pytest.mark.parametrize(
    ("command", "value", "message"),
    [
        ("preview", "0", "expected at least 1 stack at a time, got 0"),
        ("up", "-1", "expected at least 1 stack at a time, got -1"),
        ("adopt", "two", "expected a whole number of stacks, got 'two'"),
    ],
)
def test_stacks_at_a_time_must_be_a_positive_number(
    project: Path, capsys: pytest.CaptureFixture[str], command: str, value: str, message: str
) -> None:
    """Not a thread pool's ValueError once the plan is built: a usage line before anything runs."""
    from sandbox_infra.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--env", "dev", "--parallel", value, "--project-dir", str(project)])
    assert exit_.value.code == 2
    assert f"argument --parallel: {message}" in capsys.readouterr().err


def test_no_engine_is_a_clear_error_not_a_traceback(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(project))  # no `pulumi` anywhere
    code, _, err = _cli(project, "preview", "--env", "dev")
    assert code == 2
    assert err.startswith("error: cannot list the stacks of") and "is `pulumi` on PATH" in err


def test_only_names_a_slice_that_exists(project: Path) -> None:
    code, _, err = _cli(project, "plan", "--env", "dev", "--only", "client-typo")
    assert code == 2 and err == "error: --only client-typo: no such slice or stack in dev\n"
    code, out, _ = _cli(project, "plan", "--env", "dev", "--only", f"dev-client-{ACME}", "--only", "platform")
    assert code == 0
    assert (
        out
        == f"dev: 2 of 4 stacks touched\n  dev: no --base: every stack\n  dev-client-{ACME}: no --base: every stack\n"
    )
