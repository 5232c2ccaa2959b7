"""The roster pull-request workflow end to end on the local cluster, step by step as the workflows run it
(each step a make target): from a throw-away git repository with a deployed base commit and a head
commit, the pull request (check → report → preview → comment written to a file), then the merge (up of
the touched stacks only), then the nightly drift check: none, and after a change by hand, that stack
named.

The environment is its own (name, backend, client ids), so it neither sees nor changes the dev stacks;
its namespaces and volumes are deleted afterwards. The stack settings include a capacity and a price
table set with `pulumi config set --path`, so the real program reads structured settings too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.engine import REPO, copy_project, delete_client_namespaces, kubectl_json, require_tools, run

pytestmark = pytest.mark.integration

ENV_NAME = "prflow"
REPO_FILES = ("Makefile", "requirements.txt", "requirements-dev.txt", "requirements-scan.txt", ".gitignore", "tools")


@dataclass
class Repo:
    path: Path
    env: dict[str, str]
    clients: list[str]
    freelancers: list[str]

    def git(self, *args: str) -> str:
        return run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args], cwd=self.path).stdout

    def make(self, target: str, *, check: bool = True, **variables: str) -> subprocess.CompletedProcess[str]:
        return run(
            ["make", "-s", target, *(f"{k}={v}" for k, v in variables.items())],
            cwd=self.path,
            env={**self.env, "ENVIRONMENT": ENV_NAME},
            check=check,
        )

    def write_roster(self, sandboxes: list[dict[str, Any]]) -> None:
        roster = {
            "version": 1,
            "clients": [{"id": c, "name": f"PR client {i}"} for i, c in enumerate(self.clients)],
            "freelancers": [
                {"id": f, "email": f"pr{i}@example.com", "sandboxes": [s]}
                for i, (f, s) in enumerate(zip(self.freelancers, sandboxes, strict=False))
            ],
        }
        (self.path / "roster.yaml").write_text(yaml.safe_dump(roster, sort_keys=False))

    def stack(self, client: str) -> str:
        return f"{ENV_NAME}-client-{client}"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    require_tools()
    path = copy_project(tmp_path / "repo")
    for name in REPO_FILES:
        source = REPO / name
        if source.is_dir():
            # tools/ already holds the language host's Python, which copy_project brought along.
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(source, path / name)
    backend = tmp_path / "state"
    backend.mkdir()
    env = {"PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "pull-request-test", "OUT": "out"}
    repo = Repo(path, env, [str(uuid.uuid4()) for _ in range(2)], [str(uuid.uuid4()) for _ in range(3)])
    run(["pulumi", "stack", "init", ENV_NAME], cwd=path, env=env)
    config: list[tuple[str, str]] = [
        ("clusterCapacity.cpu", "64"),
        ("clusterCapacity.memory", "256Gi"),
        ("prices.currency", "EUR"),
        ("prices.cpuCoreMonth", "18.50"),
        ("prices.memoryGiBMonth", "2.40"),
        ("prices.gpuMonth", "620"),
        ("prices.storageGiBMonth", "0.12"),
        ("releases", "[]"),  # no chart repository is reachable here (docs/services.md)
    ]
    run(
        ["pulumi", "config", "set", "--secret", "--stack", ENV_NAME, "sandbox-infra:geminiApiKey", "x"],
        cwd=path,
        env=env,
    )
    for key, value in config:
        run(
            ["pulumi", "config", "set", "--path", "--stack", ENV_NAME, f"sandbox-infra:{key}", value], cwd=path, env=env
        )
    (path / "Pulumi.dev.yaml").unlink()  # this repository has one environment, its own
    repo.write_roster([{"client": repo.clients[0], "tier": "basic"}, {"client": repo.clients[1], "tier": "basic"}])
    repo.git("init", "-q", "-b", "main")
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "base: two freelancers, two clients")
    try:
        yield repo
    finally:
        delete_client_namespaces(repo.clients)


def test_pull_request_then_merge_then_drift(repo: Repo) -> None:
    # The base is deployed: what main holds runs in the cluster (no earlier deployment known: every stack).
    first = repo.make("deploy")
    assert f"{ENV_NAME}-client-{repo.clients[0]}" in (repo.path / "out" / "up.txt").read_text(), first.stderr
    base = repo.git("rev-parse", "HEAD").strip()

    # A pull request: a new freelancer at client 1, and freelancer 0 moves up a tier at client 0.
    repo.git("checkout", "-q", "-b", "change")
    repo.write_roster(
        [
            {"client": repo.clients[0], "tier": "standard"},
            {"client": repo.clients[1], "tier": "basic"},
            {"client": repo.clients[1], "tier": "basic"},
        ]
    )
    repo.git("commit", "-q", "-am", "a new freelancer; a bigger tier")

    check = repo.make("pr-check", BASE="main")
    assert check.stdout.startswith("roster.yaml: valid: 2 clients, 3 freelancers, 3 sandboxes")
    repo.make("report", BASE="main")
    report = json.loads((repo.path / "out" / "report.json").read_text())
    assert report["verdict"] == "ok"
    assert [(c["kind"], c["freelancer"]) for c in report["changes"]] == [
        ("added", "pr2@example.com"),
        ("changed", "pr0@example.com"),
    ]
    # standard over basic: 1 core x 18.50 + 2 GiB x 2.40; a basic sandbox with its 60 GiB of volumes: 30.50
    assert report["cost"]["delta"] == "53.80"
    assert sorted(s["stack"] for s in report["stacks"]["touched"]) == sorted(repo.stack(c) for c in repo.clients)

    repo.make("pr-preview", BASE="main")
    preview = json.loads((repo.path / "out" / "preview.json").read_text())
    assert preview["ok"] and {s["stack"] for s in preview["stacks"]} == {repo.stack(c) for c in repo.clients}
    assert all(not s["policy_violations"] for s in preview["stacks"])

    repo.make("pr-comment", BASE="main")
    comment = (repo.path / "out" / "comment.md").read_text()
    assert comment.startswith(
        f"## Roster change · `{ENV_NAME}` · compared with `main:roster.yaml`\n\n✅ **Safe to apply**"
    )
    assert "Cost: **+53.80 EUR/month**" in comment
    assert "### Preview (with the policy pack)" in comment
    # the new sandbox; the quota grows and the client's VirtualService gains its route
    assert f"| `{repo.stack(repo.clients[1])}` | ok | 6 | 2 | 0 | 0 |" in comment

    # The merge: up of the stacks changed since the last deployment (the base), and nothing else.
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "change")
    repo.make("deploy", BASE=base)
    up = (repo.path / "out" / "up.txt").read_text()
    assert f"up of environment {ENV_NAME}: 2 of 2 stacks ok" in up
    assert f"{ENV_NAME} " not in up.split("\n", 2)[2]  # the platform stack did not run
    pods = kubectl_json("get", "pods", "-n", f"client-{repo.clients[1]}")["items"]
    assert len(pods) == 2

    # The nightly drift check over every stack, in two shards: nothing drifted.
    for shard in ("1/2", "2/2"):
        drift = repo.make("drift", SHARD=shard)
        assert "drifted:" not in drift.stdout
    shard_files = sorted(p.name for p in (repo.path / "out").glob("drift-*.txt"))
    assert shard_files == ["drift-1-of-2.txt", "drift-2-of-2.txt"]
    ran = "".join((repo.path / "out" / name).read_text() for name in shard_files)
    assert all(f"\n{stack} " in ran for stack in [ENV_NAME, *(repo.stack(c) for c in repo.clients)])

    # A change by hand (a NetworkPolicy deleted) is drift: the check fails and names that stack alone.
    run(["kubectl", "delete", "networkpolicy", "allow-dns", "-n", f"client-{repo.clients[0]}"])
    drift = repo.make("drift", check=False)
    assert drift.returncode != 0
    assert f"drift check failed for: {repo.stack(repo.clients[0])}\n" in drift.stderr
    assert f"drifted: {repo.stack(repo.clients[0])}: the cluster differs from the roster: create 1" in drift.stdout
