"""Wall time, peak memory and CPU time of a command's whole process tree, sampled from /proc.

``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` would give the largest *single* descendant; a Pulumi
run is several processes at once (engine, language host, the program, the provider, the policy pack),
so this samples the resident set of every process in the tree every ``interval`` seconds and reports
the largest *sum* seen. A process that lives less than one interval can be missed; the big ones live
for the whole run. The same samples give each process's CPU time (user + system, as of its last sample),
summed by kind of process: where a run's CPU goes.

That sum counts a page once per process that maps it: the engine's and the provider's executables
(70 to 80 MiB each) once per stack running, Python's libraries once per interpreter. So the sampler also
reads the processes' proportional set sizes (PSS: a shared page split between the processes that map it)
at the peak of that sum: the physical memory the tree holds then, each page counted once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
PSS_STEP = 1.01
"""The PSS is read again when the resident sets' peak has grown by this factor since it was last read."""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """One measured run."""

    seconds: float
    peak_rss: int
    """Largest sum of resident set sizes of the process tree, in bytes."""
    returncode: int
    output: str
    timed_out: bool = False
    """Stopped at the time limit: ``seconds`` is then a lower bound."""
    at_peak: tuple[tuple[str, int], ...] = ()
    """Resident bytes per kind of process (engine, program, provider, ...) in the peak sample."""
    reruns: int = 0
    """Times the command was run again after a known transient failure (included in ``seconds``)."""
    cpu: tuple[tuple[str, float], ...] = ()
    """CPU seconds per kind of process, largest first (up to the last sample of each process)."""
    peak_pss: int = 0
    """Sum of proportional set sizes of the process tree at (within 1 % of) the peak of ``peak_rss``, in
    bytes: the same memory with each shared page counted once."""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may contain spaces.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def role(cmdline: list[str]) -> str:
    """What a process of a Pulumi run is, from its command line (the engine's own command line names
    the policy pack, so it is recognised first, by its executable)."""
    if not cmdline:
        return "?"
    executable = Path(cmdline[0]).name
    if executable == "pulumi":
        return "engine"
    joined = " ".join(cmdline)
    for needle, name in (
        ("pulumi-language-python-exec", "program (Python)"),
        ("bench.evaluate", "program (Python)"),
        ("pulumi-resource-kubernetes", "kubernetes provider"),
        ("pulumi-language-python", "language host"),
        ("kubectl", "kubectl"),
        ("-m sandbox_infra", "orchestrator (Python)"),
    ):
        if needle in joined:
            return name
    if executable.startswith("python") and "policies" in cmdline[1:]:
        return "policy pack (Python)"
    return executable


def tree_rss_by_role(
    root: int, cpu: dict[int, tuple[str, float]] | None = None, seen: list[int] | None = None
) -> dict[str, int]:
    """Resident bytes of ``root`` and all its descendants right now, summed per :func:`role`; records each
    process's role and CPU seconds so far in ``cpu`` (by pid), and appends each pid counted to ``seen``,
    when given."""
    tree = _children()
    usage: dict[str, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):  # the process may have just exited
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            name = role([c for c in cmdline if c])
            if name == "?" and cpu is not None and pid in cpu:
                # An exited process keeps its pid, with no command line, until its parent reaps it (the
                # Automation API reaps an engine only once it has read all its output): it is what it was.
                name = cpu[pid][0]
            usage[name] = usage.get(name, 0) + rss
            if cpu is not None:
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                cpu[pid] = (name, (int(fields[11]) + int(fields[12])) / TICKS)  # utime + stime
            if seen is not None:
                seen.append(pid)
        todo.extend(tree.get(pid, []))
    return usage


def proportional_set_size(pids: list[int]) -> int:
    """The summed PSS of ``pids`` in bytes, from ``/proc/<pid>/smaps_rollup`` (an exited process counts 0).
    The kernel walks the process's page tables for it: about 20 ms per GiB resident, so it is read only at
    a new peak of the resident sets, not every sample."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def cpu_by_role(cpu: Mapping[int, tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """CPU seconds summed per kind of process, largest first."""
    total: dict[str, float] = {}
    for name, seconds in cpu.values():
        total[name] = total.get(name, 0.0) + seconds
    return tuple(sorted(total.items(), key=lambda item: item[1], reverse=True))


class PeakSampler:
    """Samples a process tree's resident set in a background thread until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
        """The summed PSS at the peak of the resident sets (read again each time that peak grows by 1 %)."""
        self._pss_read_at = 0
        self.at_peak: dict[str, int] = {}
        self.cpu: dict[int, tuple[str, float]] = {}
        """Each process seen: its kind and its CPU seconds at its last sample."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            seen: list[int] = []
            usage = tree_rss_by_role(self.pid, self.cpu, seen)
            total = sum(usage.values())
            if total > self.peak:
                self.peak, self.at_peak = total, usage
                if total > self._pss_read_at * PSS_STEP:
                    self.peak_pss, self._pss_read_at = proportional_set_size(seen), total
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
    log: Path | None = None,
) -> Sample:
    """Run ``args`` once; output (stdout and stderr together) is kept, and written to ``log`` if given.

    The command gets its own process group, so that at the time limit the whole tree (engine, language
    host, plugins) is stopped, not just its first process."""
    start = time.perf_counter()
    timed_out = False
    with subprocess.Popen(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        with PeakSampler(proc.pid) as sampler:
            try:
                output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                seconds = time.perf_counter() - start
                _stop_group(proc)
                output, _ = proc.communicate()
                output += f"\n[bench] stopped after {timeout:.0f} s\n"
            except KeyboardInterrupt:
                _stop_group(proc)  # its own session: Ctrl-C does not reach it
                raise
        if not timed_out:
            seconds = time.perf_counter() - start
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(output)
    at_peak = tuple(sorted(sampler.at_peak.items(), key=lambda item: item[1], reverse=True))
    return Sample(
        seconds,
        sampler.peak,
        proc.returncode,
        output,
        timed_out,
        at_peak,
        cpu=cpu_by_role(sampler.cpu),
        peak_pss=sampler.peak_pss,
    )


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the command's process group, then SIGKILL what is left after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            # The group may outlive its leader (plugins): make sure it is gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass(frozen=True)
class Result:
    """The median of several samples (wall time and peak RSS medians are taken separately)."""

    seconds: float
    peak_rss: int
    runs: int
    samples: tuple[Sample, ...]

    @property
    def peak_mib(self) -> float:
        return self.peak_rss / 2**20


def repeat(measure: Callable[[], Sample], runs: int) -> Result:
    samples = tuple(measure() for _ in range(runs))
    return Result(
        seconds=statistics.median(s.seconds for s in samples),
        peak_rss=int(statistics.median(s.peak_rss for s in samples)),
        runs=runs,
        samples=samples,
    )
