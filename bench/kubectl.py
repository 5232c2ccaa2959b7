"""The kubectl side of measurement 3: the same objects, applied with ``kubectl apply --server-side``.

The manifest is rendered from a roster by running the program under mocks (``bench.evaluate --render``);
the measured script applies it in one call and then waits for what pulumi-kubernetes waits for on
create: every PersistentVolumeClaim ``Bound`` (the StorageClasses bind immediately) and every
StatefulSet rolled out (``kubectl rollout status``: ready replicas = replicas, current revision).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

FIELD_MANAGER = "sandbox-infra-bench"


def apply_script(manifest: Path, namespaces: Sequence[str], *, timeout: str = "600s") -> str:
    """A bash script: one server-side apply, then the readiness waits, namespace by namespace."""
    lines = [
        "set -euo pipefail",
        f"kubectl apply --server-side --field-manager={FIELD_MANAGER} -f {shlex.quote(str(manifest))} >/dev/null",
    ]
    for ns in namespaces:
        q = shlex.quote(ns)
        lines.append(
            f"kubectl wait -n {q} pvc --all --for=jsonpath='{{.status.phase}}'=Bound --timeout={timeout} >/dev/null"
        )
        lines.append(
            f"kubectl rollout status -n {q} statefulset -l app.kubernetes.io/name=sandbox"
            f" --timeout={timeout} >/dev/null"
        )
    return "\n".join(lines) + "\n"
