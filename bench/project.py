"""A throw-away copy of the Pulumi project with its own file backend, for benchmark stacks.

Nothing here touches the dev stack or its state: the copy lives in a temporary directory, its stacks
are ``bench-*`` in a file backend inside that directory, and their secrets use the passphrase below.
Cleaning up never runs ``pulumi destroy`` (every stack declares the shared CRD and ``platform-system``
and protects namespaces and volumes): the state is dropped with ``pulumi stack rm --force`` and the
benchmark's own namespaces (``client-be0c...``, listed from the generated rosters) are deleted with kubectl.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = (
    "Pulumi.yaml",
    "__main__.py",
    "sandbox_infra",
    "policies",
    "tools/pulumi-python",
    "tools/installed_packages.py",
)
PASSPHRASE = "sandbox-infra-bench"
"""Protects only the benchmark stacks' dummy API key."""
DUMMY_API_KEY = "bench-not-a-real-key"
POLICY_PACK = ("--policy-pack", "policies/serve")
COMMON = ("--color", "never", "--suppress-progress", "--non-interactive")


class CommandError(RuntimeError):
    """A command the benchmark needs failed; the message carries its output's tail."""


def toolchain_env(backend: str) -> dict[str, str]:
    """The environment ``tools/env.sh`` sets up (pulumi, kubectl, KUBECONFIG, plugin settings), with this
    benchmark's own backend and passphrase."""
    base = {**os.environ, "PULUMI_BACKEND_URL": backend, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
    base.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    script = 'eval "$(tools/env.sh 2>/dev/null)" && env -0'
    out = subprocess.run(["bash", "-c", script], cwd=REPO, env=base, capture_output=True, check=True).stdout
    env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    for tool in ("pulumi", "kubectl"):
        if shutil.which(tool, path=env.get("PATH")) is None:
            raise CommandError(f"{tool} is not built: run `make toolchain cluster-up` (make bench does)")
    if not env.get("KUBECONFIG"):
        raise CommandError("no local cluster: run `make cluster-up` (make bench does)")
    return env


def run(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run a helper command (not a measured one); raise with its output if it fails."""
    result = subprocess.run(
        list(args), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        shown = " ".join(args[:8]) + (f" ... ({len(args) - 8} more arguments)" if len(args) > 8 else "")
        raise CommandError(f"{shown} exited {result.returncode}:\n{tail}")
    return result


class Project:
    """A copy of the project in ``root`` whose stacks live in ``root/state``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "project"
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_FILES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, self.dir / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, self.dir / name)
        (self.dir / ".venv").symlink_to(REPO / ".venv")
        (root / "state").mkdir(exist_ok=True)
        self.env = toolchain_env(f"file://{root / 'state'}")
        self.stacks: list[str] = []

    def pulumi(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["pulumi", *args], env=self.env, cwd=self.dir)

    def init_stack(self, stack: str, roster: Path) -> None:
        """A fresh single-stack-layout stack (``slice: all``) whose roster is ``roster`` (copied into the
        project) and a dummy API key: the baseline the split layout (bench/stacks.py) is compared with."""
        self.pulumi("stack", "init", stack, "--secrets-provider", "passphrase")
        self.stacks.append(stack)
        self.set_roster(stack, roster)
        self.pulumi("config", "set", "--stack", stack, "sandbox-infra:slice", "all")
        self.pulumi("config", "set", "--stack", stack, "--secret", "sandbox-infra:geminiApiKey", DUMMY_API_KEY)
        self.pulumi("config", "set", "--stack", stack, "sandbox-infra:releases", "[]")  # no chart repository here

    def set_roster(self, stack: str, roster: Path) -> None:
        target = self.dir / f"roster-{stack}.yaml"
        shutil.copyfile(roster, target)
        self.pulumi("config", "set", "--stack", stack, "sandbox-infra:roster", target.name)

    def command(self, verb: str, stack: str, *extra: str) -> list[str]:
        """``pulumi preview|up`` of ``stack`` as the repository runs it (with the policy pack)."""
        args = ["pulumi", verb, "--stack", stack, *POLICY_PACK, *COMMON, *extra]
        if verb == "up":
            args += ["--yes", "--skip-preview", "--continue-on-error"]  # as tools/up.sh runs it
        return args

    def drop_stacks(self) -> None:
        """Forget the benchmark stacks' state (never ``destroy``: see the module docstring)."""
        for stack in self.stacks:
            run(["pulumi", "stack", "rm", stack, "--force", "--yes"], env=self.env, cwd=self.dir)
        self.stacks.clear()


def delete_namespaces(names: Iterable[str], env: Mapping[str, str]) -> None:
    """Delete the benchmark's client namespaces (and wait, so the next run starts from a clean cluster)."""
    wanted = sorted(set(names))
    if not wanted:
        return
    existing = set(
        run(["kubectl", "get", "namespaces", "-o", "name"], env=env).stdout.replace("namespace/", "").split()
    )
    present = [n for n in wanted if n in existing]
    if present:
        run(
            ["kubectl", "delete", "namespace", "--wait=true", "--timeout=600s", "--ignore-not-found", *present],
            env=env,
            timeout=900,
        )
