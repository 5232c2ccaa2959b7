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

import pulumi
import yaml

from sandbox_infra import program
from tests.unit.mocks import Recorder, resolve, run_program

DUMMY_API_KEY = "bench-not-a-real-key"
K8S_PREFIX = "kubernetes:"
# kubectl applies in file order: the CRD and namespaces must exist before what lives in them.
_ORDER = {"apiextensions.k8s.io/v1:CustomResourceDefinition": 0, "core/v1:Namespace": 1}


def evaluate(roster: Path) -> Recorder:
    """Run the program for ``roster`` under mocks; returns what it registered."""
    config = {
        "sandbox-infra:roster": str(roster),
        "sandbox-infra:geminiApiKey": DUMMY_API_KEY,
        "sandbox-infra:slice": "all",  # everything the roster declares, as the kubectl comparison needs
    }
    return run_program(program.main, config=config, secret_keys=["sandbox-infra:geminiApiKey"])


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def manifests(recorder: Recorder) -> list[dict[str, Any]]:
    """Every Kubernetes resource's inputs as a manifest, CRD first, then namespaces, then the rest."""
    objects: list[tuple[int, dict[str, Any]]] = []
    for registered in recorder.resources:
        if not registered.type.startswith(K8S_PREFIX) or registered.type == "pulumi:providers:kubernetes":
            continue
        props = resolve(pulumi.Output.from_input(registered.props))
        manifest = {_camel(k): v for k, v in props.items() if v is not None}
        token = registered.type.removeprefix(K8S_PREFIX)
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
