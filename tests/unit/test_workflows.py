"""The GitHub Actions workflows keep their promises: actions pinned by commit, least privilege, secrets only
in step environments, every `run:` a make target of this repository (so it runs locally exactly as in CI);
and the CI script's steps that need no engine: the check, the report, the comment and its one-comment
posting (against a stand-in `gh` that records the API calls)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_three_workflows_exist() -> None:
    assert [w.name for w in WORKFLOWS] == ["roster-deploy.yml", "roster-drift.yml", "roster-pr.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_with_the_version_beside(path: Path) -> None:
    uses = re.findall(r"uses: (\S+)(.*)", path.read_text())
    assert uses
    for action, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), f"{action}: add the version as a comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}, "no permission by default; each job asks for its own"
    allowed = {"contents": "read", "pull-requests": "write", "deployments": "read"}
    for name, job in workflow["jobs"].items():
        assert job["permissions"].items() <= allowed.items(), name
    for step in steps(workflow):
        if "actions/checkout" in step.get("uses", ""):
            assert step["with"]["persist-credentials"] is False  # no token left in .git/config


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_is_a_make_target_and_secrets_stay_in_env(path: Path) -> None:
    text = path.read_text()
    for step in steps(load(path)):
        if "run" not in step:
            continue
        command = step["run"].strip().split()
        assert command[0] == "make" and len(command) == 2 and command[1] in MAKE_TARGETS, step["run"]
        assert "${{" not in step["run"], "expressions go through env:, never into a shell line"
    for line in text.splitlines():
        if "secrets." in line:
            assert re.fullmatch(r"\s+[A-Z_]+: \$\{\{ secrets\.[A-Z_]+ \}\}", line), line


def test_the_pr_workflow_comments_once_and_fails_on_what_it_must() -> None:
    workflow = load(REPO / ".github" / "workflows" / "roster-pr.yml")
    runs = [s.get("run") for s in steps(workflow)]
    assert runs.index("make pr-check") < runs.index("make report") < runs.index("make pr-preview")
    assert runs.index("make pr-preview") < runs.index("make pr-comment") < runs.index("make pr-comment-post")
    # later steps still run after a failure (the comment says what failed), but never after a cancel
    by_run = {s.get("run"): s for s in steps(workflow)}
    for run in ("make report", "make pr-comment", "make pr-comment-post"):
        assert "!cancelled()" in by_run[run]["if"]
    assert workflow["concurrency"]["cancel-in-progress"] is True


def test_deployments_never_overlap_and_wait_for_the_environment() -> None:
    workflow = load(REPO / ".github" / "workflows" / "roster-deploy.yml")
    assert workflow["concurrency"]["cancel-in-progress"] is False
    job = workflow["jobs"]["deploy"]
    assert job["environment"] and "DEPLOY_KUBECONFIG" in str(job)


def test_drift_runs_every_shard() -> None:
    workflow = load(REPO / ".github" / "workflows" / "roster-drift.yml")
    job = workflow["jobs"]["drift"]
    shards = job["strategy"]["matrix"]["shard"]
    assert job["strategy"]["fail-fast"] is False
    run = next(s for s in job["steps"] if s.get("run") == "make drift")
    assert run["env"]["SHARD"] == f"${{{{ matrix.shard }}}}/{len(shards)}"
    assert shards == list(range(1, len(shards) + 1))


# ---- tools/ci.sh -----------------------------------------------------------------------------------------

GH_STUB = """#!/usr/bin/env bash
# Records every call; answers the comment listing with $GH_EXISTING (ids of comments already there).
printf '%s\\n' "$*" >>"$GH_LOG"
for arg in "$@"; do
  case "$arg" in body=@*) cp "${arg#body=@}" "$GH_LOG.body" ;; esac
done
if [[ "$*" == *"/comments --jq"* ]]; then printf '%s' "${GH_EXISTING:-}"; fi
if [[ "$*" == *"--method"* ]]; then echo "https://github.example/comment"; fi
"""


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A git repository of the project: main holds the example roster, the work tree a change to it."""
    path = tmp_path / "repo"
    path.mkdir()
    for name in ("Makefile", "Pulumi.yaml", "Pulumi.dev.yaml", "roster.yaml", "__main__.py"):
        shutil.copy(REPO / name, path / name)
    for name in ("sandbox_infra", "policies", "tools"):
        shutil.copytree(REPO / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (path / ".venv").symlink_to(REPO / ".venv")
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "-C", str(path)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], check=True)
    roster = path / "roster.yaml"
    roster.write_text(
        roster.read_text().replace(
            "tier: basic\n        storage: {workspace: 20Gi}", "tier: standard\n        storage: {workspace: 20Gi}"
        )
    )
    return path


def ci(path: Path, step: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS", "BASE", "PR", "OUT")}
    return subprocess.run(
        ["tools/ci.sh", step], cwd=path, env={**clean, **env}, capture_output=True, text=True, check=False, timeout=120
    )


def test_check_report_and_comment_from_a_base_revision(repo_copy: Path) -> None:
    check = ci(repo_copy, "check", BASE="main")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("roster.yaml: valid: ")

    report = ci(repo_copy, "report", BASE="main")
    assert report.returncode == 0, report.stderr
    assert (
        "| changed | dennis@example.com | Initech | tier basic → standard" in (repo_copy / "out/report.md").read_text()
    )
    assert '"verdict": "ok"' in (repo_copy / "out/report.json").read_text()

    comment = ci(repo_copy, "comment", BASE="main")
    assert comment.returncode == 0, comment.stderr
    body = (repo_copy / "out/comment.md").read_text()
    assert body.startswith("## Roster change · `dev` · compared with `main:roster.yaml`")
    assert body.endswith(
        "_No preview in this run (the roster check failed, or no cluster credentials for this pull request)._\n"
    )


def test_a_refused_change_fails_the_check_and_the_comment_but_the_comment_is_written(repo_copy: Path) -> None:
    roster = repo_copy / "roster.yaml"
    roster.write_text(
        roster.read_text().replace("storage: {workspace: 100Gi, home: 20Gi}", "storage: {workspace: 60Gi, home: 20Gi}")
    )
    check = ci(repo_copy, "check", BASE="main")
    assert check.returncode == 1 and "would shrink from 100Gi to 60Gi" in check.stdout
    comment = ci(repo_copy, "comment", BASE="main")
    assert comment.returncode == 1
    assert "⛔ **Refused: 1 change cannot be applied.**" in (repo_copy / "out/comment.md").read_text()


def test_a_missing_base_is_a_usage_error(repo_copy: Path) -> None:
    result = ci(repo_copy, "report", BASE="no-such-branch")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --base no-such-branch: neither a roster file nor a git revision of ."
    result = ci(repo_copy, "report")
    assert result.returncode == 1 and "BASE is not set" in result.stderr


def _gh(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(GH_STUB)
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.mark.parametrize(
    ("existing", "method", "endpoint"), [("", "POST", "issues/7/comments"), ("991\n", "PATCH", "issues/comments/991")]
)
def test_the_comment_is_created_once_then_updated_in_place(
    repo_copy: Path, tmp_path: Path, existing: str, method: str, endpoint: str
) -> None:
    assert ci(repo_copy, "comment", BASE="main").returncode == 0
    log = tmp_path / "gh.log"
    env = {
        "PATH": f"{_gh(tmp_path)}:{os.environ['PATH']}",
        "GH_LOG": str(log),
        "GH_EXISTING": existing,
        "GITHUB_REPOSITORY": "acme/sandbox-infra",
        "PR": "7",
    }
    result = ci(repo_copy, "post", **env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("api --paginate repos/acme/sandbox-infra/issues/7/comments --jq ")
    assert 'select(.body | startswith("<!-- sandbox-infra:roster-report -->"))' in calls[0]
    assert calls[1].startswith(f"api --method {method} repos/acme/sandbox-infra/{endpoint} -F body=@")
    assert len(calls) == 2  # one listing, one write: never a second comment
    posted = (tmp_path / "gh.log.body").read_text()
    assert posted == "<!-- sandbox-infra:roster-report -->\n" + (repo_copy / "out/comment.md").read_text()
