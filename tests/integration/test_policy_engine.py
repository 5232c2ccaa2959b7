"""The policy pack in the real engine: the example stack passes, a deliberately bad one is stopped.

(That the orchestrator's stacks run the pack, each passing on its own, is shown by the orchestrator's
integration tests and tests/policy/test_policies.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_infra.orchestrator import DIGEST_POLICY, policy_pack_config
from sandbox_infra.settings import StackSettings
from tests.integration.engine import copy_project, require_tools, run

pytestmark = pytest.mark.integration

PREVIEW = ["pulumi", "preview", "--stack", "policy", "--policy-pack", "policies/serve", "--color", "never"]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the project with its own stack in a throw-away backend (previews only: nothing changes)."""
    require_tools()
    path = copy_project(tmp_path / "project")
    backend = tmp_path / "state"
    backend.mkdir()
    env = {"PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "policy-test"}
    run(["pulumi", "stack", "init", "policy"], cwd=path, env=env)
    run(["pulumi", "config", "set", "--secret", "sandbox-infra:geminiApiKey", "not-a-real-key"], cwd=path, env=env)
    # Everything in one stack: every kind of object the pack judges, in one preview.
    run(["pulumi", "config", "set", "sandbox-infra:slice", "all"], cwd=path, env=env)
    run(["pulumi", "config", "set", "sandbox-infra:releases", "[]"], cwd=path, env=env)  # no chart repository here
    yield path, env


def test_example_stack_passes_the_pack(project: tuple[Path, dict[str, str]]) -> None:
    path, env = project
    result = run(PREVIEW, cwd=path, env=env)
    assert "✅ sandbox-infra-policies" in result.stdout, result.stdout


# Tags alone pass the program only where the stack allows them; the pack judges what gets through.
TAGS_ALLOWED = {"requireImageDigests": "false"}


@pytest.mark.parametrize(
    ("settings", "policy"),
    [
        (
            {**TAGS_ALLOWED, "codeServerImage": "docker.io/codercom/code-server:4.105.1"},
            "kubernetes-core-v1-pod-allowed-pinned-images",
        ),
        ({**TAGS_ALLOWED, "geminiCliTag": "0.19.4"}, "kubernetes-core-v1-pod-images-by-digest"),
        ({"homeStorageClass": "gp2"}, "kubernetes-core-v1-persistentvolumeclaim-allowed-storage-class"),
        ({"podSecurityVersion": "latest"}, "kubernetes-core-v1-namespace-pod-security-restricted"),
    ],
)
def test_a_bad_stack_is_stopped_naming_the_policy(
    project: tuple[Path, dict[str, str]], settings: dict[str, str], policy: str
) -> None:
    path, env = project
    for setting, value in settings.items():
        run(["pulumi", "config", "set", f"sandbox-infra:{setting}", value], cwd=path, env=env)
    result = run(PREVIEW, cwd=path, env=env, check=False)
    assert result.returncode != 0
    assert "[mandatory]" in result.stdout and policy in result.stdout, result.stdout


def test_the_digest_rule_only_warns_with_the_orchestrators_config(project: tuple[Path, dict[str, str]]) -> None:
    """The config the orchestrator writes where requireImageDigests is false, through the real engine."""
    path, env = project
    for setting, value in {**TAGS_ALLOWED, "geminiCliTag": "0.19.4"}.items():
        run(["pulumi", "config", "set", f"sandbox-infra:{setting}", value], cwd=path, env=env)
    config = path / "policy-config.json"
    config.write_text(json.dumps(policy_pack_config(StackSettings(require_image_digests=False))))
    result = run([*PREVIEW, "--policy-pack-config", str(config)], cwd=path, env=env)
    assert f"[advisory] [severity: high]  {DIGEST_POLICY}" in result.stdout, result.stdout
    assert "[mandatory]" not in result.stdout, result.stdout
