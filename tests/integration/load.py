"""Load: a fresh ``up --all`` of a generated roster of N freelancers (1,000 by default) completes with no
rerun by hand, every active sandbox's pod admitted and Ready.

``python -m tests.integration.load [--freelancers N]`` (``make soak-load``). It reuses the benchmark's
project copy, roster generator and measurement (bench/stacks.py): an environment of its own in a
temporary file backend, client ids ``be0c0c10...`` (``--variant``), deleted at the end. Besides wall time and memory it
counts what the API server's quota over-count costs: pods refused "exceeded quota" while the update ran
(docs/reliability.md, "Load").
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import roster
from bench.project import CommandError, run
from bench.stacks import Bench, Results, log

LOAD_VARIANT = 0x0C10


def quota_refusals(namespaces: set[str], env: dict[str, str]) -> list[str]:
    """Events of pods refused for quota in ``namespaces`` (kept by the API server for an hour)."""
    events = json.loads(
        run(["kubectl", "get", "events", "-A", "--field-selector", "reason=FailedCreate", "-o", "json"], env=env).stdout
    )["items"]
    return [
        f"{e['involvedObject']['namespace']}/{e['involvedObject']['name']} x{e.get('count', 1)}"
        for e in events
        if e["involvedObject"].get("namespace") in namespaces and "exceeded quota" in e.get("message", "")
    ]


def ready_sandboxes(namespaces: set[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """How many sandbox pods in ``namespaces`` are Ready, and the names of those that are not."""
    pods = json.loads(
        run(["kubectl", "get", "pods", "-A", "-l", "app.kubernetes.io/name=sandbox", "-o", "json"], env=env).stdout
    )["items"]
    ready, not_ready = 0, []
    for pod in pods:
        if pod["metadata"]["namespace"] not in namespaces:
            continue
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") == "True":
            ready += 1
        else:
            not_ready.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
    return ready, not_ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--freelancers", type=int, default=1000, help="roster size (default 1000)")
    parser.add_argument("--clients", type=int, help="clients (default: one per 20 freelancers, one stack each)")
    parser.add_argument(
        "--variant",
        type=lambda v: int(v, 0),
        default=LOAD_VARIANT,
        help="roster variant: other client ids (0x0c11 ...)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory and the namespaces")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sandbox-infra-load-"))
    results = Results()
    bench = Bench(work, results)
    data = roster.generate(args.freelancers, variant=args.variant, clients=args.clients)
    active = sum(1 for f in data["freelancers"] for s in f["sandboxes"] if s.get("state", "active") == "active")
    name = f"load{args.freelancers}"
    started = time.monotonic()
    try:
        bench.environment(name, data)
        log(f"{roster.describe(data)}; {active} active sandboxes")
        sample = bench.sandbox(
            "up", "--env", name, "--all", label="up --all, fresh", n=str(args.freelancers), timeout=7200
        )
        namespaces = {f"client-{c['id']}" for c in data["clients"]}
        ready, not_ready = ready_sandboxes(namespaces, bench.project.env)
        refusals = quota_refusals(namespaces, bench.project.env)
        row = results.rows[-1]
        reruns = sample.output.count("hit the ResourceQuota update race")
        print(
            f"fresh up --all of {args.freelancers} freelancers ({len(data['clients'])} stacks + platform): "
            f"exit 0 in {row.seconds:.0f} s, peak {row.peak_mib:.0f} MiB; {reruns} automatic rerun(s) for the "
            f"quota update race, none by hand; {ready} of {active} sandbox pods Ready; "
            f"{len(refusals)} pod(s) refused 'exceeded quota' on the way"
            + (f" ({', '.join(refusals[:5])}{', ...' if len(refusals) > 5 else ''})" if refusals else "")
        )
        if ready != active:
            print(f"not Ready: {', '.join(not_ready[:20])}", file=sys.stderr)
            return 1
        return 0
    except CommandError as exc:
        print(f"load soak failed after {time.monotonic() - started:.0f} s:\n{exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            try:
                bench.cleanup()
            except CommandError as exc:
                log(f"cleanup failed: {exc}")
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
