"""``python -m bench.inputs``: what the roster check costs on the worst inputs, and on a 10,000-freelancer roster
before and after a change; writes bench/INPUTS.md (docs/reliability.md quotes it).

Each row is ``python -m sandbox_infra check FILE`` in a fresh process: wall time, and the process's peak
resident memory from ``wait4`` (exact, unlike sampling). The inputs are built at the limits of
sandbox_infra/limits.py (or beyond them) to be as costly as a check can get: the most nodes libyaml composes
before the walk stops it, the most the pure-Python parser reads, the most diagnostics, an alias bomb. With
``--baseline REV`` the 10,000-freelancer roster is also checked with the program at REV (extracted with
``git archive``), interleaved run by run with the working tree, so a loaded machine slows both alike.

Options: ``--runs N`` (default 5) runs of each, ``--baseline REV`` (``--baseline-runs N`` pairs, default 9),
``--output FILE``, ``--quick`` (3 runs, writes bench/INPUTS.quick.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox_infra import limits

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STACK_FILE = "config:\n  sandbox-infra:geminiApiKey: {secure: x}\n"


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu: float
    """User plus system CPU seconds: what the check itself cost, whatever else the machine was doing."""
    peak_rss: int
    code: int
    first_line: str


def check(roster: Path, program: Path, project: Path) -> Run:
    """One ``check`` of ``roster`` with the sandbox_infra package under ``program``, in a process of its own."""
    start = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-m", "sandbox_infra", "check", str(roster), "--project-dir", str(project)],
        cwd=program,
        env={**os.environ, "PYTHONPATH": str(program)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode(errors="replace").strip()
        for _ in proc.stdout:  # drain: a million diagnostics must not block the pipe
            pass
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, usage.ru_maxrss * 1024, proc.returncode, first.replace(str(roster), "FILE"))


def worst_inputs(work: Path) -> dict[str, tuple[str, Path]]:
    """name -> (what it is, file): each built to cost as much as an input within (or just beyond) the limits can."""
    size = limits.MAX_FILE_BYTES
    out: dict[str, tuple[str, Path]] = {}

    def add(name: str, what: str, text: str) -> None:
        path = work / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        out[name] = (what, path)

    out["valid-10000"] = (
        "the 10,000-freelancer benchmark roster (valid; 2.3 MB, 172,000 nodes)",
        _roster(10_000, work),
    )
    # The largest valid roster under the file limit, in the benchmark's style.
    out["valid-34000"] = ("a 34,000-freelancer roster (valid; just under the file limit)", _roster(34_000, work))
    accented = (work / "valid-10000.yaml").read_text().replace("Bench Freelancer 0\n", "Bénch Freelancer 0\n", 1)
    add("valid-10000-accent", "the 10,000 roster with one 'é' (all of it read by the pure-Python parser)", accented)
    count = (size - 40) // 2
    what = f"{size // 2**20} MiB of `[1,1,...]`: libyaml composes {count:,} nodes, the walk stops at the limit"
    add("flow-ascii", what, "version: 1\nclients: [" + "1," * count + "1]\n")
    add("flow-accent", f"the same with an 'é': the pure-Python parser stops at {limits.MAX_NODES:,} nodes",
        "version: 1\nname: é\nclients: [" + "1," * count + "1]\n")  # fmt: skip
    errors = limits.MAX_NODES - 10
    add("errors", f"{errors:,} clients that are each wrong (one diagnostic each, every node within the limit)",
        "version: 1\nclients: [" + "1," * (errors - 1) + "1]\n")  # fmt: skip
    line = "- " + "x" * (limits.MAX_SCALAR_CHARS - 4) + "é\n"
    add("long-scalars-accent", "8 MiB of 4,096-character values with accents (pure-Python parser, few nodes)",
        "version: 1\nclients:\n" + line * ((size - 40) // len(line.encode())))  # fmt: skip
    add("alias-bomb", "nine levels of nine aliases (387 million nodes expanded)", _bomb(9, 9))
    add("deep", f"{size // 2**20} MiB of `[[[[...`", "version: 1\nclients: " + "[" * (size - 40) + "\n")
    add("documents", f"{(size - 20) // 4:,} empty YAML documents", "version: 1\n" + "---\n" * ((size - 20) // 4))
    add("over-size", "one byte over the file limit", "version: 1\n" + "#" * size)
    return out


def _roster(freelancers: int, work: Path) -> Path:
    """A generated roster, written by a process of its own: a check's peak memory (``wait4``) counts what its
    process held before it started the check, and this one must not hold a 34,000-freelancer roster."""
    path = work / f"valid-{freelancers}.yaml"
    code = (
        "from pathlib import Path; from bench import roster as r; "
        f"r.write(r.generate({freelancers}, variant=0x14), Path({str(path)!r}))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return path


def _bomb(levels: int, fanout: int) -> str:
    lines = ["version: 1", f"l0: &l0 [{', '.join(['lol'] * fanout)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"clients: *l{levels - 1}"]) + "\n"


def baseline_tree(rev: str, work: Path) -> Path:
    """The sandbox_infra package at ``rev``, extracted into ``work``."""
    archive = work / "baseline.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev, "sandbox_infra"], check=True)
    target = work / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs of each input (default 5; --quick: 3)")
    parser.add_argument("--baseline", metavar="REV", help="also check the 10,000 roster with the program at REV")
    parser.add_argument("--baseline-runs", type=int, default=9, help="interleaved pairs of runs (default 9)")
    parser.add_argument("--quick", action="store_true", help="3 runs; write bench/INPUTS.quick.md")
    parser.add_argument("--output", type=Path, help="default bench/INPUTS.md")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    output = args.output or HERE / ("INPUTS.quick.md" if args.quick else "INPUTS.md")
    started = time.perf_counter()
    load_before = os.getloadavg()[1]
    with tempfile.TemporaryDirectory(prefix="sandbox-infra-inputs-") as tmp:
        work = Path(tmp)
        (work / "Pulumi.dev.yaml").write_text(STACK_FILE)
        inputs = worst_inputs(work)
        rows = []
        for name, (what, path) in inputs.items():
            samples = [check(path, REPO, work) for _ in range(runs)]
            print(f"{name}: {statistics.median(s.cpu for s in samples):.2f} s CPU", file=sys.stderr)
            rows.append((name, what, path.stat().st_size, samples))
        comparison = []
        if args.baseline:
            baseline = baseline_tree(args.baseline, work)
            ten = inputs["valid-10000"][1]
            for _ in range(args.baseline_runs):  # interleaved: a loaded machine slows both alike
                comparison.append((check(ten, baseline, work), check(ten, REPO, work)))
    lines = [
        "# Roster check on hostile and large inputs",
        "",
        f"Generated by `python -m bench.inputs{' --baseline ' + args.baseline if args.baseline else ''}` in "
        f"{time.perf_counter() - started:.0f} s on {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}; {runs} runs of each; load average (5 min) "
        f"{load_before:.1f} at the start, {os.getloadavg()[1]:.1f} at the end (other work on the machine slows "
        "every row alike). Do not edit by hand.",
        "",
        "Each run is `python -m sandbox_infra check FILE` in a fresh process (interpreter start and imports "
        "included). CPU is the process's user + system time, the median and the largest of the runs: what the "
        "check costs, which a busy machine changes little; wall is the median elapsed time, which it changes "
        "a lot. Peak memory is the process's largest resident set (`wait4`). Limits: sandbox_infra/limits.py.",
        "",
        "| input | size | exit | CPU (median) | CPU (most) | wall (median) | peak memory | first line printed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, what, size, samples in rows:
        cpu = [s.cpu for s in samples]
        first = samples[0].first_line
        shown = first if len(first) < 110 else first[:107] + "..."
        lines.append(
            f"| {name}: {what} | {size / 1e6:.1f} MB | {samples[0].code} | {statistics.median(cpu):.2f} s "
            f"| {max(cpu):.2f} s | {statistics.median(s.seconds for s in samples):.2f} s "
            f"| {mib(max(s.peak_rss for s in samples))} | `{shown}` |"
        )
    if comparison:
        old = [a.cpu for a, _ in comparison]
        new = [b.cpu for _, b in comparison]
        lines += [
            "",
            f"## The 10,000-freelancer roster: {args.baseline} against this tree",
            "",
            f"{len(comparison)} pairs of runs, interleaved (the program at {args.baseline}, then this tree).",
            "",
            "| program | CPU (median) | CPU (least) | CPU (most) | wall (median) | peak memory |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| {args.baseline} | {statistics.median(old):.2f} s | {min(old):.2f} s | {max(old):.2f} s "
            f"| {statistics.median(a.seconds for a, _ in comparison):.2f} s "
            f"| {mib(max(a.peak_rss for a, _ in comparison))} |",
            f"| this tree | {statistics.median(new):.2f} s | {min(new):.2f} s | {max(new):.2f} s "
            f"| {statistics.median(b.seconds for _, b in comparison):.2f} s "
            f"| {mib(max(b.peak_rss for _, b in comparison))} |",
        ]
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
