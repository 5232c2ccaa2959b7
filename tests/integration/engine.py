"""Running the real Pulumi CLI and kubectl from tests, with the environment `make env` sets up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = (
    "Pulumi.yaml",
    "Pulumi.dev.yaml",
    "__main__.py",
    "roster.yaml",
    "sandbox_infra",
    "policies",
    "tools/pulumi-python",
    "tools/installed_packages.py",
)


def require_tools() -> None:
    """Integration tests need the toolchain and the cluster: missing ones are a failure, not a skip."""
    missing = [tool for tool in ("pulumi", "kubectl") if shutil.which(tool) is None]
    if missing or not os.environ.get("KUBECONFIG"):
        pytest.fail(
            f"integration tests need {', '.join(missing) or 'KUBECONFIG'} from the local toolchain and cluster: "
            'run them with `make test` (or eval "$(make -s env)" after `make toolchain cluster-up`)',
            pytrace=False,
        )


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; on an unexpected exit code fail with what it printed."""
    result = subprocess.run(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


def wait_for(what: str, timeout: float, probe: Callable[[], bool]) -> float:
    """Polls probe until it is true; returns the seconds it took, fails the test after timeout."""
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(0.5)
    return time.monotonic() - start


def kubectl_json(*args: str) -> Any:
    return json.loads(run(["kubectl", *args, "-o", "json"]).stdout)


def delete_client_namespaces(clients: Sequence[str]) -> None:
    """Delete the namespaces ``client-<id>`` a test created, and the volumes their claims left (Retain)."""
    namespaces = {f"client-{client}" for client in clients}
    for namespace in sorted(namespaces):
        run(["kubectl", "delete", "namespace", namespace, "--wait=false", "--ignore-not-found"], check=False)
    for pv in kubectl_json("get", "pv")["items"]:
        if pv["spec"].get("claimRef", {}).get("namespace") in namespaces:
            run(["kubectl", "delete", "pv", pv["metadata"]["name"], "--wait=false", "--ignore-not-found"], check=False)


def copy_project(dest: Path) -> Path:
    """A copy of the Pulumi project (same project name, so it addresses the same stacks)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest
