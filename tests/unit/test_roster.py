"""Roster validation: one test per rule, each asserting the exact line, column, path and exit code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sandbox_infra.cli import main
from sandbox_infra.roster import Roster, SandboxState, load_roster
from sandbox_infra.settings import StackSettings

ACME = "0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
GLOBEX = "083cfb9d-4274-45dd-b4a8-bb1b0e883cf5"
ADA = "e0d60578-9d7a-46c3-89f8-a131aaa11434"
GRACE = "64a1e28f-6dcb-41fe-a9d2-33558e10fc1d"

HEADER = f"""\
version: 1
clients:
  - id: {ACME}
    name: Acme Corp
freelancers:
  - id: {ADA}
    email: ada@example.com
    sandboxes:
"""
# Line 9 is the first line after HEADER.


def check(
    tmp_path: Path,
    body: str,
    capsys: pytest.CaptureFixture[str],
    *,
    stack: str | None = "sandbox-infra:geminiApiKey: {secure: x}",
) -> tuple[int, list[str]]:
    """Write a roster (and a stack file), run `check` on it, return exit code and printed lines."""
    roster = tmp_path / "roster.yaml"
    roster.write_text(textwrap.dedent(body))
    if stack is not None:
        (tmp_path / "Pulumi.dev.yaml").write_text(f"config:\n  {stack}\n")
    code = main(["check", str(roster), "--project-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    return code, [line.replace(str(roster), "roster.yaml") for line in out]


def sandbox(lines: str) -> str:
    return HEADER + textwrap.indent(textwrap.dedent(lines), "      ")


def test_example_roster_is_valid(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", str(repo / "roster.yaml"), "--project-dir", str(repo)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 clients, 8 freelancers, 9 sandboxes" in out


def test_valid_minimal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n"), capsys)
    assert code == 0
    assert out == ["roster.yaml: valid: 1 clients, 1 freelancers, 1 sandboxes (1 active; tiers: 1 basic; 0 with GPU)"]


def test_yaml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, "version: 1\nclients: [\n", capsys)
    assert code == 1
    assert out[0].startswith("roster.yaml:3:1: YAML syntax error:")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("!foo bar", "unsupported tag '!foo'"),
        ("!!binary xx", "unsupported tag '!!binary'"),
    ],
)
def test_a_value_no_safe_constructor_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    """More of these, and values their tag cannot read: tests/unit/test_input_limits.py."""
    code, out = check(tmp_path, f"version: 1\nclients: {value}\n", capsys)
    assert code == 1
    assert out == [
        f"roster.yaml:2:10: clients: {problem}: a roster holds only strings, numbers, true/false, null, lists and "
        "mappings"
    ]


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", str(tmp_path / "missing.yaml"), "--project-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith(f"{tmp_path / 'missing.yaml'}:1:1: cannot read file:")


def test_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  tierr: premium\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:9: freelancers[0].sandboxes[0].tierr: unknown key 'tierr' "
        "(expected one of client, tier, resources, gpu, image, storage, state)"
    ]


def test_duplicate_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  tier: premium\n"), capsys)
    assert code == 1
    assert out == ["roster.yaml:11:9: freelancers[0].sandboxes[0].tier: duplicate key 'tier' (first given at line 10)"]


def test_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  gpu: 'yes'\n"), capsys)
    assert code == 1
    assert out == ["roster.yaml:11:14: freelancers[0].sandboxes[0].gpu: expected true or false, got str 'yes'"]


def test_malformed_uuid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox("- client: acme\n  tier: basic\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:9:17: freelancers[0].sandboxes[0].client: malformed UUID 'acme' (expected e.g. 0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11)"
    ]


def test_duplicate_ids_and_emails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = (
        HEADER
        + f"  - id: {ADA}\n    email: Ada@Example.com\n  - id: {ACME}\n    email: x@example.com\n"
        + f"  - id: {GRACE}\n    email: y@example.com\n"
    )
    body = body.replace("    sandboxes:\n", "")
    body = body.replace("freelancers:", f"  - id: {ACME}\n    name: Again\nfreelancers:")
    code, out = check(tmp_path, body, capsys)
    assert code == 1
    assert out == [
        f"roster.yaml:5:9: clients[1].id: duplicate client id {ACME} (also clients[0])",
        f"roster.yaml:10:9: freelancers[1].id: duplicate freelancer id {ADA} (also freelancers[0])",
        "roster.yaml:11:12: freelancers[1].email: duplicate email 'Ada@Example.com' (also freelancers[0])",
    ]


def test_unknown_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {GLOBEX}\n  tier: basic\n"), capsys)
    assert code == 1
    assert out == [
        f"roster.yaml:9:17: freelancers[0].sandboxes[0].client: unknown client {GLOBEX} (not in clients[].id)"
    ]


def test_two_sandboxes_for_one_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(
        tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n- client: {ACME}\n  tier: premium\n"), capsys
    )
    assert code == 1
    assert out == [
        f"roster.yaml:11:17: freelancers[0].sandboxes[1].client: second sandbox for client {ACME} "
        "(already sandboxes[0]); a freelancer has one sandbox per client"
    ]


def test_unknown_tier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: gold\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:10:15: freelancers[0].sandboxes[0].tier: unknown tier 'gold' (expected one of basic, standard, premium, custom)"
    ]


def test_custom_needs_resources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: custom\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:10:15: freelancers[0].sandboxes[0].tier: tier custom needs a resources block (requests, limits, optional gpu)"
    ]


def test_resources_only_for_custom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = sandbox(
        f"- client: {ACME}\n  tier: basic\n  resources: {{requests: {{cpu: 1, memory: 1Gi}}, limits: {{cpu: 1, memory: 1Gi}}}}\n"
    )
    code, out = check(tmp_path, body, capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:20: freelancers[0].sandboxes[0].resources: resources is only allowed for tier custom (tier basic has fixed resources)"
    ]


def test_custom_request_above_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = sandbox(
        f"- client: {ACME}\n  tier: custom\n  resources: {{requests: {{cpu: 3, memory: 1Gi}}, limits: {{cpu: 2, memory: 1Gi}}}}\n"
    )
    code, out = check(tmp_path, body, capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:37: freelancers[0].sandboxes[0].resources.requests.cpu: request is larger than the limit (2)"
    ]


def test_gpu_on_tier_without_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: standard\n  gpu: true\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:14: freelancers[0].sandboxes[0].gpu: tier standard has no GPU (GPUs are available on: premium, custom)"
    ]


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("lots", "'lots' is not a Kubernetes quantity (examples: '500m', '2', '4Gi')"),
        ("0", "must be a positive size, got '0'"),
        ("-5Gi", "must be a positive size, got '-5Gi'"),
        ("501Gi", "501Gi exceeds the maximum volume size 500Gi (stack setting maxStorage)"),
    ],
)
def test_storage_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str, message: str) -> None:
    code, out = check(
        tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  storage: {{workspace: '{size}'}}\n"), capsys
    )
    assert code == 1
    assert out == [f"roster.yaml:11:30: freelancers[0].sandboxes[0].storage.workspace: {message}"]


def test_max_storage_comes_from_the_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = "sandbox-infra:geminiApiKey: {secure: x}\n  sandbox-infra:maxStorage: 60Gi"
    code, out = check(
        tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  storage: {{home: 70Gi}}\n"), capsys, stack=stack
    )
    assert code == 1
    assert out == [
        "roster.yaml:11:25: freelancers[0].sandboxes[0].storage.home: 70Gi exceeds the maximum volume size 60Gi (stack setting maxStorage)"
    ]


def test_latest_image_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  image: latest\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:16: freelancers[0].sandboxes[0].image: image tag 'latest' is not allowed: pin a version"
    ]


DIGEST = "sha256:" + "ab" * 32


def test_image_by_tag_and_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  image: 2026.11.20@{DIGEST}\n"), capsys)
    assert (code, out[-1:]) == (0, [out[-1]]) and "valid" in out[-1]


def test_image_by_tag_only_needs_a_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Digests are required by default (as in production): a tag alone is refused, naming the field."""
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  image: 2026.11.20\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:16: freelancers[0].sandboxes[0].image: image '2026.11.20' is pinned by tag only: add its "
        "digest (2026.11.20@sha256:<64 lowercase hex digits>), or set the stack setting requireImageDigests: false"
    ]


def test_image_by_tag_only_when_the_stack_allows_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = 'sandbox-infra:geminiApiKey: {secure: x}\n  sandbox-infra:requireImageDigests: "false"'
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  image: 2026.11.20\n"), capsys, stack=stack)
    assert code == 0, out


def test_malformed_image_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n  image: 2026.11.20@sha256:abc\n"), capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:16: freelancers[0].sandboxes[0].image: '2026.11.20@sha256:abc' is not an image tag, "
        "optionally pinned by digest (TAG or TAG@sha256:<64 lowercase hex digits>; no registry)"
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "sandbox-infra:codeServerImage: registry.platform.com/mirror/code-server:4.105.1",
            "error: Pulumi.dev.yaml:3:3: sandbox-infra:codeServerImage: 'registry.platform.com/mirror/code-server:4.105.1' "
            "is pinned by tag only: add its digest (@sha256:<64 lowercase hex digits>) (the stack setting "
            "requireImageDigests is true)\n",
        ),
        (
            "sandbox-infra:geminiCliTag: 0.19.4",
            "error: Pulumi.dev.yaml:3:3: sandbox-infra:geminiCliTag: '0.19.4' is pinned by tag only: add its digest "
            "(0.19.4@sha256:<64 lowercase hex digits>) (the stack setting requireImageDigests is true)\n",
        ),
        (
            "sandbox-infra:codeServerImage: registry.platform.com/mirror/code-server@sha256:abc",
            "error: Pulumi.dev.yaml:3:3: sandbox-infra:codeServerImage: 'registry.platform.com/mirror/code-server@sha256:abc' "
            "has an invalid digest 'sha256:abc' (expected sha256: and 64 lowercase hex digits)\n",
        ),
        (
            "sandbox-infra:requireImageDigests: maybe",
            "error: Pulumi.dev.yaml:3:3: sandbox-infra:requireImageDigests: expected true or false, got 'maybe'\n",
        ),
    ],
)
def test_image_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, expected: str) -> None:
    """A stack setting's error names the stack file, the line and column of its key, and the setting."""
    (tmp_path / "Pulumi.dev.yaml").write_text(f"config:\n  sandbox-infra:geminiApiKey: {{secure: x}}\n  {line}\n")
    (tmp_path / "roster.yaml").write_text(sandbox(f"- client: {ACME}\n  tier: basic\n"))
    code = main(["check", str(tmp_path / "roster.yaml"), "--project-dir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err == expected


def test_image_settings_accept_every_pinned_form() -> None:
    from sandbox_infra.settings import settings_from_mapping

    for image in (f"registry.example.com:5000/mirror/code-server@{DIGEST}", f"mirror/code-server:4.105.1@{DIGEST}"):
        assert settings_from_mapping({"codeServerImage": image}, secret_keys={}).code_server_image == image
    relaxed = {
        "requireImageDigests": "false",
        "codeServerImage": "mirror/code-server:4.105.1",
        "geminiCliTag": "0.19.4",
    }
    assert settings_from_mapping(relaxed, secret_keys={}).require_image_digests is False


def test_name_too_long(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox_infra import naming

    monkeypatch.setattr(naming, "sandbox", lambda fid: f"sandbox-with-a-much-longer-prefix-{fid}")
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n"), capsys)
    assert code == 1
    assert out[0].startswith(
        f"roster.yaml:6:9: freelancers[0].id: generated StatefulSet name 'sandbox-with-a-much-longer-prefix-{ADA}' is 70 characters (limit 52)"
    )


def test_missing_api_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n"), capsys, stack=None)
    assert code == 1
    assert out == [
        f"roster.yaml:3:9: clients[0].id: no Gemini API key for client {ACME}: set the platform default with "
        "`pulumi config set --secret sandbox-infra:geminiApiKey ...` or this client's key with "
        f"`pulumi config set --secret --path 'sandbox-infra:clientGeminiApiKeys.{ACME}' ...` (Pulumi.dev.yaml)"
    ]


def test_per_client_api_key_is_enough(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = f"sandbox-infra:clientGeminiApiKeys:\n    {ACME}: {{secure: x}}"
    code, _ = check(tmp_path, sandbox(f"- client: {ACME}\n  tier: basic\n"), capsys, stack=stack)
    assert code == 0


def test_every_error_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = sandbox(f"- client: {ACME}\n  tier: gold\n- client: {GLOBEX}\n  tier: basic\n  gpu: true\n")
    code, out = check(tmp_path, body, capsys)
    assert code == 1
    assert [line.split(": ")[1] for line in out] == [
        "freelancers[0].sandboxes[0].tier",
        "freelancers[0].sandboxes[1].client",
        "freelancers[0].sandboxes[1].gpu",
    ]


def test_loaded_model(example_roster: Path) -> None:
    roster = load_roster(example_roster, StackSettings(api_key_present=True))
    assert isinstance(roster, Roster)
    states = {s.state for _, s in roster.sandboxes()}
    assert states == {SandboxState.ACTIVE, SandboxState.SUSPENDED, SandboxState.ARCHIVED}


def _without(text: str, start: str, end: str) -> str:
    i, j = text.index(start), text.index(end)
    return text[:i] + text[j:]


def test_removing_an_active_sandbox_is_refused(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "roster.yaml"
    new.write_text(_without((repo / "roster.yaml").read_text(), "  - id: 26d36db5", "  - id: 95a68ebd"))
    code = main(["check", str(new), "--project-dir", str(repo), "--previous", str(repo / "roster.yaml")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out == [
        f"{repo / 'roster.yaml'}:59:9: freelancers[6].sandboxes[0]: active sandbox of 26d36db5-bedd-4711-bf82-75ae035d432b "
        "for b38cf925-1979-4799-93b8-ea79b0712d0c was removed: set `state: archived` first and update; "
        "volumes are only released deliberately (docs/offboarding.md)"
    ]


def test_removing_an_archived_sandbox_is_a_note(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (repo / "roster.yaml").read_text()
    new = tmp_path / "roster.yaml"
    new.write_text(text[: text.index("  - id: 95a68ebd")])
    code = main(["check", str(new), "--project-dir", str(repo), "--previous", str(repo / "roster.yaml")])
    captured = capsys.readouterr()
    assert code == 0
    assert "note: " in captured.err and "archived sandbox of 95a68ebd" in captured.err


def test_removing_a_client_is_refused(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (repo / "roster.yaml").read_text()
    new = tmp_path / "roster.yaml"
    without_initech = text.replace("  - id: b38cf925-1979-4799-93b8-ea79b0712d0c\n    name: Initech\n", "")
    new.write_text(without_initech.split("  - id: f0fe0837")[0])
    code = main(["check", str(new), "--project-dir", str(repo), "--previous", str(repo / "roster.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    assert "clients[2]: client b38cf925-1979-4799-93b8-ea79b0712d0c was removed: deleting its namespace" in out


def test_moving_a_client_to_another_stack_group_is_refused(
    tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "roster.yaml"
    new.write_text(
        (repo / "roster.yaml").read_text().replace("    name: Globex\n", "    name: Globex\n    stack: small\n")
    )
    code = main(["check", str(new), "--project-dir", str(repo), "--previous", str(repo / "roster.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    assert "clients[1]: client 083cfb9d-4274-45dd-b4a8-bb1b0e883cf5 moves from stack group of its own to small" in out


def test_shrinking_a_volume_is_refused(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (repo / "roster.yaml").read_text()
    new = tmp_path / "roster.yaml"
    # grace's workspace 100Gi -> 60Gi; dennis's home (the 10Gi default) -> 5Gi; dennis's workspace grows
    shrunk = text.replace("storage: {workspace: 100Gi, home: 20Gi}", "storage: {workspace: 60Gi, home: 20Gi}")
    new.write_text(shrunk.replace("storage: {workspace: 20Gi}", "storage: {workspace: 30Gi, home: 5Gi}"))
    code = main(["check", str(new), "--project-dir", str(repo), "--previous", str(repo / "roster.yaml")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    refusal = (
        "Kubernetes cannot shrink a volume claim; keep the size (or move the data to a new, smaller volume by hand)"
    )
    assert out == [
        f"{repo / 'roster.yaml'}:28:30: freelancers[1].sandboxes[0].storage.workspace: workspace volume of "
        f"64a1e28f-6dcb-41fe-a9d2-33558e10fc1d for 0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11 would shrink from 100Gi to 60Gi: {refusal}",
        f"{repo / 'roster.yaml'}:61:18: freelancers[6].sandboxes[0].storage.home: home volume of "
        f"26d36db5-bedd-4711-bf82-75ae035d432b for b38cf925-1979-4799-93b8-ea79b0712d0c would shrink from 10Gi to 5Gi: {refusal}",
    ]


def test_growing_a_volume_is_allowed(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "roster.yaml"
    new.write_text(
        (repo / "roster.yaml")
        .read_text()
        .replace("storage: {workspace: 20Gi}", "storage: {workspace: 20Gi, home: 11Gi}")
    )
    code = main(["check", str(new), "--project-dir", str(repo), "--previous", str(repo / "roster.yaml")])
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Small", "'Small' is not a stack group (lowercase letters, digits and '-', at most 40 characters)"),
        ("client-x", "stack group 'client-x' may not start with 'client-' (reserved)"),
        ("a" * 41, "is not a stack group"),
    ],
)
def test_stack_groups_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str) -> None:
    (tmp_path / "roster.yaml").write_text(
        f"version: 1\nclients:\n  - id: {ACME}\n    name: Acme\n    stack: {value}\nfreelancers: []\n"
    )
    code = main(["check", str(tmp_path / "roster.yaml"), "--project-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert message in out and ":5:12: clients[0].stack: " in out


def test_custom_gpu_count_needs_gpu_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = sandbox(
        f"- client: {ACME}\n  tier: custom\n  resources: {{requests: {{cpu: 1, memory: 1Gi}}, limits: {{cpu: 2, memory: 2Gi}}, gpu: 2}}\n"
    )
    code, out = check(tmp_path, body, capsys)
    assert code == 1
    assert out == [
        "roster.yaml:11:90: freelancers[0].sandboxes[0].resources.gpu: resources.gpu is set but gpu is false; set gpu: true"
    ]


def test_bad_stack_setting_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  sandbox-infra:maxStorage: 5Gi\n")
    (tmp_path / "roster.yaml").write_text(sandbox(f"- client: {ACME}\n  tier: basic\n"))
    code = main(["check", str(tmp_path / "roster.yaml"), "--project-dir", str(tmp_path)])
    assert code == 2
    assert (
        capsys.readouterr().err
        == "error: Pulumi.dev.yaml: sandbox-infra:defaultWorkspaceSize: 50Gi exceeds maxStorage 5Gi\n"
    )
