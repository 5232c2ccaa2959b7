"""Measurement 1 (and the renderer for 3): the Pulumi program evaluated under Pulumi's mocks.

Run as ``python -m bench.evaluate ROSTER [--profile OUT.prof] [--render OUT.yaml]`` in a fresh process,
so that the parent can time it and sample its memory. It runs the real entry point
(``sandbox_infra.program.main``: config, roster validation, every component) with the unit tests'
mocks, which echo inputs as outputs. ``--render`` also writes every Kubernetes object the program
declared as a multi-document YAML manifest for ``kubectl apply --server-side``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pulumi.runtime import rpc

from sandbox_infra import program
from tests.unit.mocks import Recorder, run_program

DUMMY_API_KEY = "bench-not-a-real-key"
K8S_PREFIX = "kubernetes:"
SECRET_SIG = rpc._special_sig_key
# kubectl applies in file order: the CRD and namespaces must exist before what lives in them.
_ORDER = {"apiextensions.k8s.io/v1:CustomResourceDefinition": 0, "core/v1:Namespace": 1}


def evaluate(roster: Path) -> Recorder:
    """Run the program for ``roster`` under mocks; returns what it registered."""
    config = {
        "sandbox-infra:roster": str(roster),
        "sandbox-infra:geminiApiKey": DUMMY_API_KEY,
        "sandbox-infra:slice": "all",  # everything the roster declares, as the kubectl comparison needs
        "sandbox-infra:releases": "[]",  # no chart repository can be reached here
    }
    return run_program(program.main, config=config, secret_keys=["sandbox-infra:geminiApiKey"])


def _plain(value: Any) -> Any:
    """A wire value as kubectl takes it: secrets unwrapped, whole numbers as integers (the wire has floats)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == rpc._special_secret_sig:
            return _plain(value["value"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifests(recorder: Recorder) -> list[dict[str, Any]]:
    """Every Kubernetes resource's inputs as the engine receives them (camelCase, as the API server takes
    them), as a manifest: CRD first, then namespaces, then the rest."""
    objects: list[tuple[int, dict[str, Any]]] = []
    for (type_, _), wire in recorder.wire.items():
        if not type_.startswith(K8S_PREFIX) or type_ == "pulumi:providers:kubernetes":
            continue
        manifest = {k: v for k, v in _plain(wire).items() if v is not None}
        token = type_.removeprefix(K8S_PREFIX)
        objects.append((_ORDER.get(token, 2), manifest))
    objects.sort(key=lambda item: item[0])
    return [m for _, m in objects]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__)
    parser.add_argument("roster", type=Path)
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the evaluation here")
    parser.add_argument("--render", type=Path, help="write the declared objects as a multi-document YAML here")
    args = parser.parse_args(argv)

    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    recorder = evaluate(args.roster.resolve())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    seconds = time.perf_counter() - start
    if args.render:
        docs = manifests(recorder)
        args.render.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    print(json.dumps({"resources": len(recorder.resources), "program_seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
