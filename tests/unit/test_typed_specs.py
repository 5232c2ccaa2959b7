"""The type checker that reads the Kubernetes specs (basedpyright, `make lint`) does see the SDK's TypedDicts.

pulumi-kubernetes hides its ``*ArgsDict`` TypedDicts from mypy (aliases of ``Mapping[str, Any]`` under
``MYPY``), so mypy accepts any key in a spec; `make lint` runs basedpyright over ``sandbox_infra`` for them
(pyproject.toml). These cases prove that check can fail: a misspelled field, a value of the wrong type and a
nested mistake are each reported, in a file checked with the project's own settings, and a correct spec is
not. If an SDK upgrade hid the TypedDicts from pyright too, the lint step would pass silently; this fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BASEDPYRIGHT = Path(sys.executable).parent / "basedpyright"

SPECS = """
import pulumi_kubernetes as k8s

def misspelled() -> k8s.core.v1.SecurityContextArgsDict:
    return {"read_only_root_filesytem": True}

def wrong_type() -> k8s.core.v1.ContainerPortArgsDict:
    return {"container_port": "8080"}

def nested() -> k8s.core.v1.ContainerArgsDict:
    return {"name": "ide", "resources": {"limit": {"cpu": "1"}}}

def correct() -> k8s.core.v1.ContainerArgsDict:
    return {"name": "ide", "ports": [{"container_port": 8080}], "resources": {"limits": {"cpu": "1"}}}
"""


def test_basedpyright_checks_kubernetes_specs_against_the_sdk(tmp_path: Path) -> None:
    if not BASEDPYRIGHT.exists():
        pytest.fail(f"{BASEDPYRIGHT} is missing: `make venv` installs it (requirements-dev.txt)")
    sample = tmp_path / "specs.py"
    sample.write_text(SPECS)
    # With the project's [tool.basedpyright] settings (its virtualenv, so the SDK's types).
    result = subprocess.run(
        [str(BASEDPYRIGHT), "--project", str(REPO / "pyproject.toml"), str(sample)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = {int(line.split(":")[1]) for line in result.stdout.splitlines() if " - error: " in line}
    source = SPECS.splitlines()
    reported = {source[n - 1].strip() for n in lines}
    assert result.returncode == 1, result.stdout + result.stderr
    assert reported == {
        'return {"read_only_root_filesytem": True}',
        'return {"container_port": "8080"}',
        'return {"name": "ide", "resources": {"limit": {"cpu": "1"}}}',
    }, result.stdout
