"""The real Pulumi engine built by `make toolchain`: pinned versions, plugins present, no downloads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.engine import REPO, require_tools, run

pytestmark = pytest.mark.integration


def pins() -> dict[str, str]:
    lines = (REPO / "tools" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_cli_and_plugins_are_the_pinned_versions() -> None:
    require_tools()
    assert run(["pulumi", "version"]).stdout.strip() == f"v{pins()['PULUMI_VERSION']}"
    plugins = run(["pulumi", "plugin", "ls", "--json"]).stdout
    assert '"name": "kubernetes"' in plugins and f'"version": "{pins()["PULUMI_KUBERNETES_VERSION"]}"' in plugins


def test_python_sdk_plugin_version_matches_the_pin() -> None:
    """The pulumi-kubernetes wheel asks the engine for exactly the plugin version we build."""
    import json

    import pulumi_kubernetes

    plugin = json.loads((Path(pulumi_kubernetes.__file__).parent / "pulumi-plugin.json").read_text())
    assert plugin["version"] == pins()["PULUMI_KUBERNETES_VERSION"]


MINIMAL_PROGRAM = """\
import pulumi_kubernetes as k8s

k8s.core.v1.Namespace("smoke", metadata={"name": "engine-smoke-test"})
"""


def _minimal_project(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "Pulumi.yaml").write_text("name: engine-smoke\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(MINIMAL_PROGRAM)
    backend = tmp_path / "state"
    backend.mkdir()
    env = {"PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "test"}
    run(["pulumi", "stack", "init", "smoke"], cwd=tmp_path, env=env)
    return env


def test_preview_of_a_minimal_program(tmp_path: Path) -> None:
    require_tools()
    env = _minimal_project(tmp_path)
    result = run(["pulumi", "preview", "--color", "never", "--diff"], cwd=tmp_path, env=env)
    assert "kubernetes:core/v1:Namespace" in result.stdout
    assert re.search(r"\+ 2 to create", result.stdout), result.stdout  # the stack and the namespace


def test_a_missing_plugin_fails_instead_of_downloading(tmp_path: Path) -> None:
    require_tools()
    env = _minimal_project(tmp_path)
    empty_home = tmp_path / "empty-pulumi-home"
    empty_home.mkdir()
    result = run(
        ["pulumi", "preview", "--stack", "smoke", "--color", "never"],
        cwd=tmp_path,
        env={**env, "PULUMI_HOME": str(empty_home)},
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "kubernetes" in output and re.search(r"(not|no) .*(found|installed)|missing", output, re.I), output
    assert not (empty_home / "plugins").exists() or not any((empty_home / "plugins").iterdir())
