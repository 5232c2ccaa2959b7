"""The README's commands work as written: each one it shows is either run here, or named as needing the
long build or a cluster of one's own (so a new command in the README must be classified to pass)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()

# Commands that need only the virtualenv: run here, from the repository, and must exit 0.
RUN_HERE: dict[str, list[str]] = {
    "make check": ["make", "-s", "check"],
    "make help": ["make", "-s", "help"],
    "python -m sandbox_infra check": [sys.executable, "-m", "sandbox_infra", "check"],
    "python -m sandbox_infra plan": [sys.executable, "-m", "sandbox_infra", "plan", "--env", "dev"],
    "python -m sandbox_infra report": [sys.executable, "-m", "sandbox_infra", "report", "--base", "roster.yaml"],
}
# Commands that need the long build, the local cluster (make preview: tests/integration/test_stack.py),
# a cluster of one's own, or are this suite itself.
ELSEWHERE = (
    "make up",
    "make test",
    "make lint",
    "make unit",
    "make bench",
    "make bench-stacks",
    "make soak",  # hours; its tests run as a fast sample in this suite
    "make soak-crash",  # 20 killed updates or more; three run in this suite
    "make soak-load",  # a fresh up of 1,000 freelancers
    "make preview",
    "make report",  # the pull request steps need a base revision (tests/unit/test_workflows.py runs them)
    "make pr-comment",
    "make drift",
    "python -m sandbox_infra preview",
    "python -m sandbox_infra up",
    "python -m sandbox_infra adopt",
    "python -m sandbox_infra drift",
    "pip install",
    "pulumi ",
)


def readme_commands() -> list[str]:
    """Every command the README shows: lines of ``sh`` blocks, and inline code that starts with a tool."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    commands += [c for c in re.findall(r"`((?:make|python -m|pulumi|pip) [^`]*)`", README)]
    return commands


def test_every_readme_command_is_classified() -> None:
    unknown = [c for c in readme_commands() if not c.startswith(tuple(RUN_HERE)) and not c.startswith(ELSEWHERE)]
    assert unknown == [], "classify these README commands in tests/unit/test_readme.py"


@pytest.mark.parametrize("shown", sorted(RUN_HERE))
def test_readme_command_runs(shown: str) -> None:
    assert any(c.startswith(shown) for c in readme_commands()), f"{shown} is no longer in the README"
    result = subprocess.run(RUN_HERE[shown], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_first_lines_are_the_two_commands() -> None:
    first = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first] == [["make", "up"], ["make", "test"]]
