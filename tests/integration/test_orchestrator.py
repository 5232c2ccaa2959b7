"""The orchestrator on the real engine and cluster: only touched stacks run, adoption moves without
replacing, and a failing stack fails the command by name while the others finish.

Each test uses an environment of its own (a throw-away backend, fresh client ids), so it neither sees nor
changes the dev stacks that `make up` manages; its namespaces and volumes are deleted afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox_infra.orchestrator import stacks_in_directory
from sandbox_infra.recovery import backend_directory
from tests.integration.engine import copy_project, delete_client_namespaces, kubectl_json, require_tools, run

pytestmark = pytest.mark.integration


@dataclass
class Environment:
    """A project copy with its own environment file, roster and backend."""

    path: Path
    name: str
    env: dict[str, str]
    clients: list[str]
    freelancers: list[str]

    def sandbox(self, *args: str, check: bool = True) -> Any:
        """Run `python -m sandbox_infra ARGS --env NAME --json`; return the parsed summary."""
        result = run(
            ["python", "-m", "sandbox_infra", *args, "--env", self.name, "--json"],
            cwd=self.path,
            env=self.env,
            check=check,
        )
        if check or result.stdout.strip().startswith("{"):
            return {"exit": result.returncode, **json.loads(result.stdout), "stderr": result.stderr}
        return {"exit": result.returncode, "stdout": result.stdout, "stderr": result.stderr}

    def write_roster(self, edit: dict[str, Any] | None = None) -> None:
        roster: dict[str, Any] = {
            "version": 1,
            "clients": [{"id": c, "name": f"Client {i}"} for i, c in enumerate(self.clients)],
            "freelancers": [
                {"id": f, "email": f"f{i}@example.com", "sandboxes": [{"client": self.clients[i % 2], "tier": "basic"}]}
                for i, f in enumerate(self.freelancers)
            ],
        }
        for key, value in (edit or {}).items():
            roster[key] = value
        (self.path / "roster.yaml").write_text(yaml.safe_dump(roster, sort_keys=False))

    def stack(self, client: str) -> str:
        return f"{self.name}-client-{client}"


def _environment(tmp_path: Path, name: str, extra_config: dict[str, str] | None = None) -> Environment:
    require_tools()
    path = copy_project(tmp_path / "project")
    backend = tmp_path / "state"
    backend.mkdir()
    env = {"PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "orchestrator-test"}
    environment = Environment(
        path, name, env, [str(uuid.uuid4()) for _ in range(2)], [str(uuid.uuid4()) for _ in range(3)]
    )
    run(["pulumi", "stack", "init", name], cwd=path, env=env)
    run(
        ["pulumi", "config", "set", "--secret", "--stack", name, "sandbox-infra:geminiApiKey", "not-a-real-key"],
        cwd=path,
        env=env,
    )
    # No chart repository is reachable here: the Helm releases are off, as in the dev environment.
    for key, value in {"releases": "[]", **(extra_config or {})}.items():
        run(["pulumi", "config", "set", "--stack", name, f"sandbox-infra:{key}", value], cwd=path, env=env)
    environment.write_roster()
    return environment


def _cleanup(environment: Environment) -> None:
    delete_client_namespaces(environment.clients)


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Environment]:
    environment = _environment(tmp_path, "orch")
    yield environment
    _cleanup(environment)


def _stacks(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["stack"]: s for s in summary["stacks"]}


def _pvc_uids(environment: Environment) -> dict[str, str]:
    uids = {}
    for client in environment.clients:
        for pvc in kubectl_json("get", "pvc", "-n", f"client-{client}")["items"]:
            uids[f"{client}/{pvc['metadata']['name']}"] = pvc["metadata"]["uid"]
    return uids


def test_a_change_to_one_client_runs_only_its_stack(environment: Environment) -> None:
    first = environment.sandbox("up", "--all")
    assert set(_stacks(first)) == {"orch", *(environment.stack(c) for c in environment.clients)}
    assert all(s["status"] == "ok" and s["changes"].get("create", 0) > 0 for s in first["stacks"])
    assert all(not s["policy_violations"] for s in first["stacks"])
    pods = kubectl_json("get", "pods", "-n", f"client-{environment.clients[0]}")["items"]
    assert len(pods) == 2  # freelancers 0 and 2 work for client 0

    base = environment.path / "base-roster.yaml"
    base.write_text((environment.path / "roster.yaml").read_text())
    added = str(uuid.uuid4())
    environment.freelancers.append(added)  # freelancer 3 works for client 1
    environment.write_roster()

    plan = run(
        ["python", "-m", "sandbox_infra", "plan", "--env", "orch", "--base", str(base)],
        cwd=environment.path,
        env=environment.env,
    )
    assert (
        f"orch: 1 of 3 stacks touched\n  {environment.stack(environment.clients[1])}: sandbox {added[:8]} added"
        in plan.stdout
    )

    preview = environment.sandbox("preview", "--base", str(base))
    assert list(_stacks(preview)) == [environment.stack(environment.clients[1])]
    # the sandbox (component, two volumes, Service, StatefulSet, Sandbox object); the quota grows and the
    # client's VirtualService gains the sandbox's route
    assert preview["stacks"][0]["changes"]["create"] == 6 and preview["stacks"][0]["changes"]["update"] == 2

    up = environment.sandbox("up", "--base", str(base))
    assert list(_stacks(up)) == [environment.stack(environment.clients[1])]
    assert kubectl_json("get", "sandboxes.platform.com", f"sandbox-{added}", "-n", f"client-{environment.clients[1]}")

    again = environment.sandbox("preview", "--all")
    for stack in again["stacks"]:
        assert set(stack["changes"]) == {"same"}, stack

    # The orchestrator reads a file backend's stacks from its directory: the same the engine lists.
    listed = run(["pulumi", "stack", "ls", "--json"], cwd=environment.path, env=environment.env)
    by_engine = {s["name"] for s in json.loads(listed.stdout)}
    by_directory = stacks_in_directory(backend_directory(environment.env["PULUMI_BACKEND_URL"]), "sandbox-infra")
    assert by_directory == by_engine == {"orch", *(environment.stack(c) for c in environment.clients)}


def _single_stack_layout(tmp_path: Path, name: str) -> Environment:
    """An environment in the single-stack layout (``slice: all``, what ``adopt`` splits): one stack holding everything."""
    environment = _environment(tmp_path, name, {"slice": "all"})
    try:
        run(
            ["pulumi", "up", "--stack", name, "--yes", "--skip-preview", "--color", "never"],
            cwd=environment.path,
            env=environment.env,
        )
    except BaseException:
        _cleanup(environment)
        raise
    return environment


def test_adoption_moves_the_single_stack_without_replacing_anything(tmp_path: Path) -> None:
    environment = _single_stack_layout(tmp_path, "adopt")
    try:
        before = _pvc_uids(environment)
        assert len(before) == 6

        adopted = environment.sandbox("adopt")
        assert adopted["ok"], adopted
        assert {s["stack"] for s in adopted["stacks"]} == {
            "adopt",
            *(environment.stack(c) for c in environment.clients),
        }
        for stack in adopted["stacks"]:
            assert set(stack["changes"]) == {"same"}, stack  # nothing created, updated, replaced or deleted
        assert "sandbox-infra:slice" not in (environment.path / "Pulumi.adopt.yaml").read_text()

        up = environment.sandbox("up", "--all")
        for stack in up["stacks"]:
            assert {op for op, n in stack["changes"].items() if n} == {"same"}, stack
        assert _pvc_uids(environment) == before
    finally:
        _cleanup(environment)


def test_the_platform_stack_of_the_single_stack_layout_is_not_updated(tmp_path: Path) -> None:
    environment = _single_stack_layout(tmp_path, "legacy")
    try:
        run(
            ["pulumi", "config", "rm", "--stack", "legacy", "sandbox-infra:slice"],
            cwd=environment.path,
            env=environment.env,
        )
        refused = environment.sandbox("up", "--all", check=False)
        assert refused["exit"] == 2
        assert (
            "still holds client resources" in refused["stderr"]
            and "sandbox_infra adopt --env legacy" in refused["stderr"]
        )
        assert len(_pvc_uids(environment)) == 6
    finally:
        _cleanup(environment)


def test_a_failing_stack_fails_the_command_by_name_while_the_others_finish(environment: Environment) -> None:
    broken, fine = environment.clients
    # A namespace that someone else manages, with a label the tenant sets to another value: server-side
    # apply refuses to take the field over (a conflict), so that stack's update fails.
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": f"client-{broken}", "labels": {"app.kubernetes.io/part-of": "someone-else"}},
    }
    manifest = environment.path / "conflict.json"
    manifest.write_text(json.dumps(namespace))
    run(["kubectl", "apply", "--server-side", "--field-manager=someone-else", "-f", str(manifest)])
    result = environment.sandbox("up", "--all", check=False)
    assert result["exit"] == 1
    stacks = _stacks(result)
    assert stacks[environment.stack(broken)]["status"] == "failed"
    assert f"client-{broken}" in stacks[environment.stack(broken)]["error"]
    assert stacks[environment.stack(fine)]["status"] == "ok"
    assert len(kubectl_json("get", "pods", "-n", f"client-{fine}")["items"]) == 1


def test_a_policy_violation_fails_the_stacks_it_is_in_and_is_named(tmp_path: Path) -> None:
    environment = _environment(
        tmp_path,
        "policy",
        # A registry the settings do not check but the policy pack refuses (digests not required: a tag is fine).
        {"codeServerImage": "docker.io/codercom/code-server:4.105.1", "requireImageDigests": "false"},
    )
    result = environment.sandbox("preview", "--all", check=False)
    assert result["exit"] == 1
    stacks = _stacks(result)
    assert stacks["policy"]["status"] == "ok"  # the platform stack runs no code-server
    for client in environment.clients:
        violations = stacks[environment.stack(client)]["policy_violations"]
        mandatory = [v for v in violations if v.startswith("[mandatory]")]
        assert mandatory and all("kubernetes-core-v1-pod-allowed-pinned-images" in v for v in mandatory)
        # The tag is also reported, as advice only, where the stack does not require digests.
        assert any(v.startswith("[advisory] kubernetes-core-v1-pod-images-by-digest") for v in violations)
        assert stacks[environment.stack(client)]["status"] == "failed"
