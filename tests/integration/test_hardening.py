"""The hardening fixes on the real engine and API server (docs/hardening.md).

What only a real cluster shows: that the ServiceAccount controller's own ``default`` account ends up with
``automountServiceAccountToken: false`` after the program's patch (whichever of the two got there first),
that the pods the StatefulSet controller creates carry the key as a 0400 file and no environment variable,
run as 10001 and always pull, that the Secret holds Gemini CLI's ``.env`` file, and that a second ``up``
finds nothing to change (the patch does not fight the controller).

An environment of its own (throw-away backend, fresh client ids); its namespaces and volumes are deleted
afterwards. (The kwok nodes run no containers, so the probe and file permissions on a node are not
exercised here: docs/hardening.md says what the kubelet does with them.)
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox_infra.sandbox import API_KEY_FILE, GROUP_ID, USER_ID
from tests.integration.engine import kubectl_json
from tests.integration.test_orchestrator import Environment, _cleanup, _environment

pytestmark = pytest.mark.integration


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Environment]:
    environment = _environment(tmp_path, "harden")
    yield environment
    _cleanup(environment)


def _pods(namespace: str) -> list[dict[str, Any]]:
    return list(kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=sandbox")["items"])


def test_the_cluster_holds_what_the_scanner_was_shown(environment: Environment) -> None:
    first = environment.sandbox("up", "--all")
    assert all(s["status"] == "ok" and not s["policy_violations"] for s in first["stacks"]), first

    for client in environment.clients:
        namespace = f"client-{client}"
        default = kubectl_json("get", "serviceaccount", "default", "-n", namespace)
        assert default["automountServiceAccountToken"] is False
        secret = kubectl_json("get", "secret", "gemini-api-key", "-n", namespace)
        assert set(secret["data"]) == {".env"}
        assert base64.b64decode(secret["data"][".env"]).decode() == "GEMINI_API_KEY=not-a-real-key\n"

        pods = _pods(namespace)
        assert pods, namespace
        for pod in pods:
            spec = pod["spec"]
            context = spec["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (USER_ID, GROUP_ID, GROUP_ID)
            containers = {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}
            for container in containers.values():
                assert container["imagePullPolicy"] == "Always"
                assert "@sha256:" in container["image"]
                assert not any("secretKeyRef" in env.get("valueFrom", {}) for env in container.get("env", []))
                assert not any("secretRef" in source for source in container.get("envFrom", []))
            [volume] = [v for v in spec["volumes"] if "secret" in v]
            assert volume["secret"]["defaultMode"] == 0o400
            assert volume["secret"]["items"] == [{"key": ".env", "path": ".env", "mode": 0o400}]
            [mount] = [m for m in containers["gemini-cli"]["volumeMounts"] if m["name"] == volume["name"]]
            assert mount == {"name": volume["name"], "mountPath": API_KEY_FILE, "subPath": ".env", "readOnly": True}
            assert "exec" in containers["gemini-cli"]["readinessProbe"]

    # The platform namespace too (shared by every environment on this cluster; only read here).
    assert (
        kubectl_json("get", "serviceaccount", "default", "-n", "platform-system")["automountServiceAccountToken"]
        is False
    )

    # As `make up` runs it: with a refresh first, which reads the patched account back from the cluster.
    second = environment.sandbox("up", "--all", "--refresh")
    for stack in second["stacks"]:
        assert stack["status"] == "ok", stack
        assert {op for op, n in stack["changes"].items() if n} == {"same"}, stack
