"""``python -m bench.stacks``: the split layout (a platform stack and one stack per client group) at scale.

What it measures, each as a fresh process tree (wall time and peak resident memory of the whole tree):

1. ``plan`` (which stacks a change touches, no engine) of a roster with one more freelancer, at N = 1,000
   and 10,000;
2. a one-freelancer change where every stack exists: ``plan`` + ``preview --base`` of what it touches, and
   ``up --base``, at N = 1,000 and 10,000 (the other stacks exist, empty: they are not touched);
3. a fresh ``up --all`` of N = 1,000 (reruns for the ResourceQuota race counted, none by hand), then a full
   ``preview --all`` of every stack;
4. ``up --all`` of N = 100 against ``kubectl apply --server-side`` of the same objects with the same waits;
5. many tiny clients: 1,000 clients with one freelancer each, grouped 20 clients to a stack (``stack:``
   in the roster): ``plan``, and a full ``preview --all`` of fresh stacks; and the per-stack cost of the
   ungrouped layout, from 20 one-client stacks, to say what 1,000 of them would cost.

Results go to ``bench/STACKS.md`` (``--output``); ``--quick`` runs N = 100 only. Nothing touches the dev
environment: the stacks live in a file backend in a temporary directory; namespaces are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import kubectl, roster
from bench.measure import Sample
from bench.measure import run as measure_run
from bench.project import DUMMY_API_KEY, REPO, CommandError, Project, delete_namespaces, run
from bench.report import machine

HERE = Path(__file__).resolve().parent
CHANGE_VARIANT = 0x0100
FULL_VARIANT = 0x0110
UP100_VARIANT = 0x0120
KUBECTL100_VARIANT = 0x0121
TINY_VARIANT = 0x0130
TINY_UNGROUPED_VARIANT = 0x0131
TINY_GROUP = 20
"""Clients per stack in the many-tiny-clients roster."""


def log(message: str) -> None:
    print(f"[bench.stacks {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Measurement:
    """One row: what was run, its wall time and peak memory, and what the command reported."""

    what: str
    n: str
    seconds: float
    peak_mib: float
    note: str = ""
    ok: bool = True
    pss_mib: float = 0
    """Peak of the summed proportional set sizes: the same tree's memory with each shared page counted once."""


@dataclass
class Results:
    rows: list[Measurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Bench:
    """A project copy in ``work`` whose environments (one per roster) live in ``work/state``."""

    def __init__(self, work: Path, results: Results) -> None:
        self.work = work
        self.project = Project(work)
        self.results = results
        self.namespaces: set[str] = set()

    # ---- environments ------------------------------------------------------------------------------

    def environment(self, name: str, data: dict[str, Any]) -> Path:
        """An environment ``name`` (its settings file, platform stack and dummy key) for roster ``data``."""
        path = roster.write(data, self.project.dir / f"roster-{name}.yaml")
        self.project.pulumi("stack", "init", name, "--secrets-provider", "passphrase")
        self.project.pulumi("config", "set", "--stack", name, "sandbox-infra:roster", path.name)
        self.project.pulumi("config", "set", "--stack", name, "--secret", "sandbox-infra:geminiApiKey", DUMMY_API_KEY)
        self.project.pulumi("config", "set", "--stack", name, "sandbox-infra:releases", "[]")  # no chart repository
        self.namespaces.update(f"client-{c['id']}" for c in data["clients"])
        return path

    def init_stacks(self, stacks: Sequence[str]) -> None:
        """Create empty stacks (what a roster's other clients' stacks are to a change that does not touch them)."""
        log(f"creating {len(stacks)} empty stacks")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(
                pool.map(lambda s: self.project.pulumi("stack", "init", s, "--secrets-provider", "passphrase"), stacks)
            )

    def sandbox(self, *args: str, label: str, n: str, timeout: float = 3600) -> Sample:
        """Run ``python -m sandbox_infra ARGS`` measured; record a row; raise if it failed."""
        log(f"start {label} (N = {n}): python -m sandbox_infra {' '.join(args)}")
        sample = measure_run(
            [sys.executable, "-m", "sandbox_infra", *args],
            cwd=self.project.dir,
            env=self.project.env,
            timeout=timeout,
            log=self.work / "logs" / f"{label.replace(' ', '-')}-{n}.log",
        )
        note = "; ".join(part for part in (_note(sample.output), _at_peak(sample), _cpu(sample)) if part)
        ok = sample.returncode == 0 and not sample.timed_out
        self.results.rows.append(
            Measurement(label, n, sample.seconds, sample.peak_rss / 2**20, note, ok, sample.peak_pss / 2**20)
        )
        log(
            f"end   {label} (N = {n}): {sample.seconds:.1f} s, {sample.peak_rss / 2**20:.0f} MiB "
            f"(PSS {sample.peak_pss / 2**20:.0f} MiB); {note}"
        )
        if not ok:
            raise CommandError(f"{label} at N = {n} failed (exit {sample.returncode}):\n{sample.output[-3000:]}")
        return sample

    # ---- measurements ------------------------------------------------------------------------------

    def plan_and_change(self, n: int, *, up: bool = True) -> None:
        """1 and 2: plan of one more freelancer; then, with every stack existing, preview and up of it."""
        name = f"change{n}"
        variant = CHANGE_VARIANT + len(str(n))  # each size its own clients: two stacks never share a namespace
        data = roster.generate(n, variant=variant)
        base = self.environment(name, data)
        base_copy = shutil.copyfile(base, self.project.dir / f"base-{name}.yaml")
        head = roster.add_freelancer(data, variant=variant)
        target = head["freelancers"][-1]["sandboxes"][0]["client"]
        roster.write(head, base)
        plan = self.sandbox(
            "plan", "--env", name, "--base", str(base_copy), label="plan, one more freelancer", n=str(n)
        )
        touched = re.findall(rf"^  ({name}-\S+): ", plan.output, re.MULTILINE)
        if touched != [f"{name}-client-{target}"]:
            raise CommandError(f"plan touched {touched}, expected only {name}-client-{target}")
        if not up:
            return
        # Every other stack exists (empty); the touched one is up with the base roster.
        others = [f"{name}-client-{c['id']}" for c in data["clients"] if c["id"] != target]
        self.init_stacks(others)
        roster.write(data, base)
        self.sandbox(
            "up", "--env", name, "--only", "platform", "--only", f"client-{target}", label="setup up", n=str(n)
        )
        self.results.rows.pop()  # setup, not a measurement
        roster.write(head, base)
        self.sandbox("preview", "--env", name, "--base", str(base_copy), label="preview, one more freelancer", n=str(n))
        self.sandbox("up", "--env", name, "--base", str(base_copy), label="up, one more freelancer", n=str(n))

    def full(self, n: int) -> None:
        """3: a fresh up of every stack (no rerun by hand), then a full preview."""
        name = f"full{n}"
        self.environment(name, roster.generate(n, variant=FULL_VARIANT))
        self.sandbox("up", "--env", name, "--all", label="up --all, fresh", n=str(n))
        self.sandbox("preview", "--env", name, "--all", label="preview --all", n=str(n))

    def against_kubectl(self, n: int) -> None:
        """4: up --all of N fresh, against kubectl apply --server-side of the same objects and waits."""
        name = f"up{n}"
        self.environment(name, roster.generate(n, variant=UP100_VARIANT))
        pulumi = self.sandbox("up", "--env", name, "--all", label="up --all, fresh (vs kubectl)", n=str(n))
        data = roster.generate(n, variant=KUBECTL100_VARIANT)
        path = roster.write(data, self.work / f"kubectl-{n}.yaml")
        self.namespaces.update(f"client-{c['id']}" for c in data["clients"])
        manifest = self.work / f"manifest-{n}.yaml"
        run([sys.executable, "-m", "bench.evaluate", str(path), "--render", str(manifest)], env={}, cwd=REPO)
        script = kubectl.apply_script(manifest, [f"client-{c['id']}" for c in data["clients"]])
        log(f"start kubectl apply --server-side (N = {n})")
        sample = measure_run(["bash", "-c", script], env=self.project.env, log=self.work / "logs" / f"kubectl-{n}.log")
        ratio = pulumi.seconds / sample.seconds if sample.seconds else 0
        self.results.rows.append(
            Measurement(
                "kubectl apply --server-side + waits", str(n), sample.seconds, sample.peak_rss / 2**20,
                f"up --all / kubectl = {ratio:.2f}x", sample.returncode == 0, sample.peak_pss / 2**20,
            )
        )  # fmt: skip
        log(f"end   kubectl (N = {n}): {sample.seconds:.1f} s; ratio {ratio:.2f}x")

    def tiny_clients(self, clients: int) -> None:
        """5: many tiny clients. Fresh previews (an update of a thousand namespaces would take most of an hour
        here and is not what this row is about): grouped TINY_GROUP to a stack, and ungrouped for a sample of
        TINY_GROUP clients, whose cost per stack says what one stack per client would cost at ``clients``."""
        data = roster.generate(clients, variant=TINY_VARIANT, clients=clients)
        for i, client in enumerate(data["clients"]):
            client["stack"] = f"group-{i // TINY_GROUP:03}"
        name = f"tiny{clients}"
        path = self.environment(name, data)
        base = shutil.copyfile(path, self.project.dir / f"base-{name}.yaml")
        roster.write(roster.add_freelancer(data, variant=TINY_VARIANT), path)
        self.sandbox(
            "plan", "--env", name, "--base", str(base), label="plan, one more freelancer, tiny clients", n=str(clients)
        )
        roster.write(data, path)
        self.sandbox(
            "preview", "--env", name, "--all",
            label=f"preview --all, fresh stacks, one-freelancer clients, {TINY_GROUP} per stack", n=str(clients),
        )  # fmt: skip
        sample = roster.generate(TINY_GROUP, variant=TINY_UNGROUPED_VARIANT, clients=TINY_GROUP)
        self.environment("tiny", sample)
        preview = self.sandbox(
            "preview", "--env", "tiny", "--all",
            label="preview --all, fresh stacks, one-freelancer clients, one stack each", n=str(TINY_GROUP),
        )  # fmt: skip
        per_stack = preview.seconds / (TINY_GROUP + 1)
        self.results.rows.append(
            Measurement(
                "estimate: the same, one stack each", str(clients), per_stack * (clients + 1), 0,
                f"{per_stack:.2f} s a stack (row above) x {clients + 1} stacks; not run",
            )
        )  # fmt: skip

    def cleanup(self) -> None:
        log(f"cleanup: {len(self.namespaces)} namespaces")
        existing = run(["kubectl", "get", "namespaces", "-o", "name"], env=self.project.env).stdout.split()
        names = self.namespaces | {
            n.removeprefix("namespace/") for n in existing if n.startswith(f"namespace/client-{roster.CLIENT_PREFIX}01")
        }
        delete_namespaces(names, self.project.env)
        pvs = json.loads(run(["kubectl", "get", "pv", "-o", "json"], env=self.project.env).stdout)["items"]
        ours = [p["metadata"]["name"] for p in pvs if p["spec"].get("claimRef", {}).get("namespace") in names]
        for start in range(0, len(ours), 200):
            run(
                ["kubectl", "delete", "pv", "--wait=false", "--ignore-not-found", *ours[start : start + 200]],
                env=self.project.env,
            )


def _note(output: str) -> str:
    """What the command said about itself: stacks run and how they went, reruns for the quota race."""
    parts = []
    summary = re.search(r"^(\w[\w ]*) of environment \S+: (\d+) of (\d+) stacks ok", output, re.MULTILINE)
    if summary:
        parts.append(f"{summary[2]}/{summary[3]} stacks ok")
    touched = re.search(r"^\S+: (\d+) of (\d+) stacks touched", output, re.MULTILINE)
    if touched:
        parts.append(f"{touched[1]} of {touched[2]} stacks touched")
    at_a_time = re.search(r"(\d+) at a time", output)
    if at_a_time:
        parts.append(f"{at_a_time[1]} at a time")
    reruns = output.count("hit the ResourceQuota update race")
    if reruns:
        parts.append(f"{reruns} automatic reruns (quota race)")
    return "; ".join(parts)


def _cpu(sample: Sample) -> str:
    """Where the CPU went: the four kinds of process that used most (summed over every stack)."""
    top = [f"{role} {seconds:.1f}" for role, seconds in sample.cpu[:4] if seconds >= 0.1]
    return f"CPU-s: {', '.join(top)}" if top else ""


def _at_peak(sample: Sample) -> str:
    """Where the memory was at the peak: the three biggest kinds of process (summed over every stack)."""
    top = [f"{role} {size / 2**20:.0f}" for role, size in sample.at_peak[:3] if size >= 50 * 2**20]
    return f"MiB at peak: {', '.join(top)}" if top else ""


def render(results: Results, command: str) -> str:
    lines = [
        "# The split layout at scale",
        "",
        f"Generated by `{command}` on {machine()}, in {results.seconds / 60:.1f} min. "
        "Each row is one fresh process tree: wall time and the peak of the summed resident memory of every "
        "process in it (orchestrator, engines, programs, providers, policy packs); PSS: their summed "
        "proportional set sizes at that peak, where a page that several processes map (the engine's and the "
        "provider's executables, Python's libraries) counts once. See bench/stacks.py and bench/measure.py.",
        "",
        "| measurement | N | wall | peak memory | peak PSS | what the command reported |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in results.rows:
        memory = f"{row.peak_mib:.0f} MiB" if row.peak_mib else ""
        pss = f"{row.pss_mib:.0f} MiB" if row.pss_mib else ""
        flag = "" if row.ok else " **(failed)**"
        lines.append(f"| {row.what}{flag} | {row.n} | {row.seconds:.1f} s | {memory} | {pss} | {row.note} |")
    if results.failures:
        lines += ["", "Not measured in this run (a step failed):", ""]
        lines += [f"- {failure}" for failure in results.failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 only; write bench/STACKS.quick.md")
    parser.add_argument("--only", action="append", choices=("change", "full", "kubectl", "tiny"), help="run only these")
    parser.add_argument("--output", type=Path, help="where to write the results (default bench/STACKS.md)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    output = args.output or HERE / ("STACKS.quick.md" if args.quick else "STACKS.md")
    wanted = set(args.only or ("change", "full", "kubectl", "tiny"))
    work = Path(tempfile.mkdtemp(prefix="sandbox-infra-bench-stacks-"))
    results = Results()
    start = time.perf_counter()
    bench: Bench | None = None
    try:
        bench = Bench(work, results)
        if "change" in wanted:
            for n in (100,) if args.quick else (1000, 10000):
                bench.plan_and_change(n)
        if "kubectl" in wanted:
            bench.against_kubectl(100)
        if "full" in wanted:
            bench.full(100 if args.quick else 1000)
        if "tiny" in wanted:
            bench.tiny_clients(100 if args.quick else 1000)
    except (CommandError, OSError) as exc:
        log(f"FAILED: {exc}")
        results.failures.append(str(exc).splitlines()[0])
    except KeyboardInterrupt:
        results.failures.append("interrupted")
    finally:
        results.seconds = time.perf_counter() - start
        command = "python -m bench.stacks" + (
            " " + " ".join(sys.argv[1:]) if argv is None and len(sys.argv) > 1 else ""
        )
        output.write_text(render(results, command))
        log(f"wrote {output}")
        if bench is not None:
            try:
                bench.cleanup()
            except CommandError as exc:
                log(f"cleanup failed: {exc}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
