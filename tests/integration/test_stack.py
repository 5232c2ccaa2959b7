"""The dev environment with the example roster, brought up through the orchestrator on the real cluster.

The dev stacks (the platform stack `dev` and one per client) are the ones `make up` manages: these tests
bring them to the example roster (as `make up` does), check what the cluster then holds, and leave it there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox_infra.quantity import parse_quantity
from tests.integration.engine import REPO, copy_project, kubectl_json, require_tools, run

pytestmark = pytest.mark.integration

UP = ["python", "-m", "sandbox_infra", "up", "--env", "dev", "--all"]
PREVIEW = ["python", "-m", "sandbox_infra", "preview", "--env", "dev", "--all", "--json"]
STACKS = {
    "dev",
    "dev-client-0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11",
    "dev-client-083cfb9d-4274-45dd-b4a8-bb1b0e883cf5",
    "dev-client-b38cf925-1979-4799-93b8-ea79b0712d0c",
}
ACTIVE = 7  # sandboxes in state active in roster.yaml (1 suspended, 1 archived)
DENNIS = "26d36db5-bedd-4711-bf82-75ae035d432b"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tools()
    path = copy_project(tmp_path_factory.mktemp("project"))
    # --refresh: the cluster may have been recreated since the state was written.
    run([*UP, "--refresh"], cwd=path)
    yield path


# Only the example roster's namespaces: other stacks (benchmarks) may share the cluster.
NAMESPACES = {
    "client-0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11",
    "client-083cfb9d-4274-45dd-b4a8-bb1b0e883cf5",
    "client-b38cf925-1979-4799-93b8-ea79b0712d0c",
}


def in_roster(kind: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json("get", kind, "-A", "-l", selector)["items"]
    return [item for item in items if item["metadata"]["namespace"] in NAMESPACES]


def sandbox_pods() -> list[dict[str, Any]]:
    return in_roster("pods", "app.kubernetes.io/name=sandbox")


def test_every_active_sandbox_pod_is_admitted_and_ready(project: Path) -> None:
    pods = sandbox_pods()
    assert len(pods) == ACTIVE
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        assert ready.get("Ready") == "True", pod["metadata"]["name"]


def test_volumes_are_bound(project: Path) -> None:
    pvcs = in_roster("pvc", "app.kubernetes.io/part-of=sandbox-infra")
    assert len(pvcs) == 18
    assert {p["status"]["phase"] for p in pvcs} == {"Bound"}


def test_quota_admits_what_it_was_sized_for(project: Path) -> None:
    """Acme's quota is sized for its sandboxes, GPU included, plus the headroom of its largest budget (the
    premium one, with its GPU; docs/architecture.md), and admitted every one of their pods.

    The pods are counted here, not the quota's ``status.used``: that is the quota controller's running tally,
    which lags behind pods replaced by an update until its next resync."""
    quotas = in_roster("resourcequota", "app.kubernetes.io/part-of=sandbox-infra")
    assert len(quotas) == 3
    acme = "client-0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
    hard = next(q for q in quotas if q["metadata"]["namespace"] == acme)["status"]["hard"]
    assert hard["requests.nvidia.com/gpu"] == "2"  # the GPU sandbox's, and the premium headroom's
    pods = [p for p in sandbox_pods() if p["metadata"]["namespace"] == acme]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    requests = [c["resources"]["requests"] for p in pods for c in p["spec"]["containers"]]
    assert sum(int(r.get("nvidia.com/gpu", "0")) for r in requests) == 1
    assert sum(parse_quantity(r["cpu"]) for r in requests) <= parse_quantity(hard["requests.cpu"])
    assert sum(parse_quantity(r["memory"]) for r in requests) <= parse_quantity(hard["requests.memory"])


def test_every_stack_of_the_split_layout_exists(project: Path) -> None:
    stacks = json.loads(run(["pulumi", "stack", "ls", "--json"], cwd=project).stdout)
    assert {s["name"] for s in stacks} >= STACKS


def test_second_run_changes_nothing(project: Path) -> None:
    summary = json.loads(run(PREVIEW, cwd=project).stdout)
    assert {s["stack"] for s in summary["stacks"]} == STACKS
    for stack in summary["stacks"]:
        assert set(stack["changes"]) == {"same"}, stack


def test_make_preview_shows_no_change_after_up(project: Path) -> None:
    # What `make preview` runs (the repository's own roster.yaml, which the copy was made from).
    result = run(["bash", "tools/up.sh", "--preview", "dev"], cwd=REPO)
    assert "roster.yaml: valid: 3 clients, 8 freelancers, 9 sandboxes" in result.stdout
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("dev")]
    assert {line[0] for line in lines} == STACKS
    for line in lines:
        assert line[1] == "ok" and line[2:6] == ["0", "0", "0", "0"], line  # create update replace delete


def test_removing_a_freelancer_keeps_their_volumes(project: Path) -> None:
    roster = project / "roster.yaml"
    original = roster.read_text()
    start, end = original.index(f"  - id: {DENNIS}"), original.index("  - id: 95a68ebd")
    roster.write_text(original[:start] + original[end:])
    try:
        refused = run([*UP, "--base", str(REPO / "roster.yaml")], cwd=project, check=False)
        assert refused.returncode == 1, "a roster change that drops an active sandbox must be refused"
        assert "set `state: archived` first" in refused.stdout
        result = run(UP, cwd=project, check=False)
        assert result.returncode != 0, "removing a sandbox's volumes must not succeed silently"
        assert "protect" in (result.stdout + result.stderr)
        namespace = "client-b38cf925-1979-4799-93b8-ea79b0712d0c"
        names = {p["metadata"]["name"] for p in kubectl_json("get", "pvc", "-n", namespace)["items"]}
        assert {f"workspace-{DENNIS}", f"home-{DENNIS}"} <= names
    finally:
        roster.write_text(original)
        run([*UP, "--refresh"], cwd=project)
    assert len(sandbox_pods()) == ACTIVE
