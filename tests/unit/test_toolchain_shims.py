"""tools/pulumi-python: the language host's Python, which answers its package listing without pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox_infra.orchestrator import PYTHON_SHIM, engine_env
from tests.conftest import REPO

SHIM = REPO / PYTHON_SHIM
PIP_LIST = ["-m", "pip", "list", "-v", "--format", "json"]


def _env() -> dict[str, str]:
    """PATH as the tooling sets it: the project's virtualenv first (the shim runs the python3 found there)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_the_listing_is_pips_own() -> None:
    """The language host reads name, version and location of each package; all of it must match pip's."""
    by_pip = subprocess.run([sys.executable, *PIP_LIST], capture_output=True, text=True, check=True, env=_env())
    by_shim = subprocess.run([str(SHIM), *PIP_LIST], capture_output=True, text=True, check=True, env=_env())
    ours = json.loads(by_shim.stdout)
    assert ours == json.loads(by_pip.stdout)
    assert any(p["name"].replace("_", "-") == "pulumi-kubernetes" for p in ours)


def test_anything_else_is_python_itself(tmp_path: Path) -> None:
    script = tmp_path / "echo.py"
    script.write_text("import sys; print(sys.argv[1:]); sys.exit(3)\n")
    done = subprocess.run(
        [str(SHIM), str(script), "a b", "-m"], capture_output=True, text=True, env=_env(), check=False
    )
    assert (done.returncode, done.stdout) == (3, "['a b', '-m']\n")
    pip = subprocess.run([str(SHIM), "-m", "pip", "--version"], capture_output=True, text=True, env=_env(), check=False)
    assert pip.returncode == 0 and pip.stdout.startswith("pip ")


def test_the_orchestrator_hands_it_to_the_language_host_unless_one_is_set(tmp_path: Path) -> None:
    assert engine_env(REPO, {})["PULUMI_PYTHON_CMD"] == str(SHIM)
    assert "PULUMI_PYTHON_CMD" not in engine_env(REPO, {"PULUMI_PYTHON_CMD": "python3.12"})
    assert "PULUMI_PYTHON_CMD" not in engine_env(tmp_path, {})  # a project without the shim: python3
