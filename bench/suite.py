"""The measurements of ``python -m bench``, in the order of bench/RESULTS.md's tables.

Every measured command runs in a fresh process tree (see :mod:`bench.measure`); helper commands
(stack setup, cleanup) are not timed. Progress lines go to stdout as each measurement starts and ends.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import kubectl, profiles, roster
from bench.measure import Result, Sample, repeat
from bench.measure import run as measure_run
from bench.project import REPO, CommandError, Project, delete_namespaces, run

# Roster variants: the first hex digits of client ids (client-be0c<variant>-...), one per purpose, so
# that what one measurement creates never collides with another's.
PREVIEW_VARIANT = 0x0001
UP_VARIANT = 0x0010
KUBECTL_VARIANT = 0x0020
UP_SKIP_VARIANT = 0x0011
BIG_UP_VARIANT = 0x0030
CLIENT_STACK_VARIANT = 0x0040
CLIENT_STACK_FREELANCERS = roster.FREELANCERS_PER_CLIENT
CLIENT_STACK_LABEL = f"1 client, {CLIENT_STACK_FREELANCERS}"
"""Row label of the client-sized stack in table 4 (its N column)."""
ENGINE_FUNCTIONS = (
    "github.com/pulumi/pulumi/pkg/v3/backend.(*SnapshotManager).saveSnapshot",
    "github.com/pulumi/pulumi/pkg/v3/resource/stack.SerializeDeploymentWithMetadata",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Options:
    sizes: tuple[int, ...]
    up_size: int | None
    big_up: bool
    runs_small: int
    runs_slow: int
    """Runs of a pulumi command at N >= 100 (each takes tens of seconds)."""
    runs_large: int
    large_from: int
    cap: float
    """Time limit of one default preview at N >= large_from (it is quadratic in the resource count)."""
    skip_checkpoints_variant: bool
    work: Path
    profiles_dir: Path | None


@dataclass
class Row:
    """One line of a results table."""

    label: str
    result: Result
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    rosters: dict[str, str] = field(default_factory=dict)
    evaluate: list[Row] = field(default_factory=list)
    preview: list[Row] = field(default_factory=list)
    up: list[Row] = field(default_factory=list)
    incremental: list[Row] = field(default_factory=list)
    profile_notes: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _runs(n: int, options: Options, *, slow: bool = False) -> int:
    if n >= options.large_from:
        return options.runs_large
    return options.runs_slow if slow and n >= 100 else options.runs_small


def _timed(what: str, runs: int, measure: Any) -> Result:
    log(f"start {what} ({runs} run{'s' if runs > 1 else ''})")
    samples: list[Sample] = []

    def once() -> Sample:
        sample: Sample = measure()
        samples.append(sample)
        if sample.timed_out:
            log(f"  run {len(samples)}/{runs}: stopped at the time limit, {sample.seconds:.0f} s")
            return sample
        if sample.returncode != 0:
            raise CommandError(f"{what} exited {sample.returncode}:\n{_errors(sample.output)}")
        log(f"  run {len(samples)}/{runs}: {sample.seconds:.1f} s, peak {sample.peak_rss / 2**20:.0f} MiB")
        return sample

    result = repeat(once, runs)
    log(f"end   {what}: median {result.seconds:.1f} s, peak {result.peak_mib:.0f} MiB")
    return result


QUOTA_RACE = "Operation cannot be fulfilled on resourcequotas"
"""kubernetes/kubernetes#67761: concurrent creations in a namespace with a ResourceQuota can fail with 409
Conflict; pulumi-kubernetes does not retry it. `pulumi up` is idempotent, so running it again finishes."""
UP_ATTEMPTS = 3


def _up(project: Project, stack: str, *, env: dict[str, str], log_file: Path) -> Sample:
    """``pulumi up`` of ``stack``, run again (at most twice) if it hit the quota race, as `make up` does;
    the sample's time and peak cover every run and it counts the reruns."""
    seconds, peak, reruns = 0.0, 0, 0
    while True:
        sample = measure_run(project.command("up", stack), cwd=project.dir, env=env, log=log_file)
        seconds, peak = seconds + sample.seconds, max(peak, sample.peak_rss)
        if sample.returncode == 0 or QUOTA_RACE not in sample.output or reruns + 1 >= UP_ATTEMPTS:
            break
        reruns += 1
        log(f"  pulumi up hit the ResourceQuota update race (kubernetes/kubernetes#67761): running it again ({reruns})")
    return replace(sample, seconds=seconds, peak_rss=peak, reruns=reruns)


def _errors(output: str, limit: int = 3000) -> str:
    """What a failed pulumi command said went wrong: its error lines (each with the line before, which
    names the resource), else the end of its output. The outputs' tail alone is the stack outputs."""
    lines = output.splitlines()
    picked = [
        f"{lines[i - 1].strip()} {line.strip()}" if i else line.strip()
        for i, line in enumerate(lines)
        if "error:" in line
    ]
    text = "\n".join(dict.fromkeys(picked)) if picked else output
    return text[:limit] if picked else text[-limit:]


def _generate(n: int, variant: int, work: Path, results: Results) -> Path:
    data = roster.generate(n, variant=variant)
    path = roster.write(data, work / "rosters" / f"roster-{n}-{variant:04x}.yaml")
    results.rosters.setdefault(f"N = {n}", roster.describe(data))
    return path


def _namespaces(path: Path) -> list[str]:
    import yaml  # local: only for reading back a generated roster

    data = yaml.safe_load(path.read_text())
    return [f"client-{c['id']}" for c in data["clients"]]


def measure_evaluate(options: Options, results: Results) -> None:
    """1. The program under mocks, in a fresh interpreter per run."""
    python = sys.executable
    for n in options.sizes:
        path = _generate(n, PREVIEW_VARIANT, options.work, results)
        args = [python, "-m", "bench.evaluate", str(path)]
        result = _timed(f"evaluate under mocks N={n}", _runs(n, options), lambda a=args: measure_run(a, cwd=REPO))
        info = [json.loads(s.output.strip().splitlines()[-1]) for s in result.samples]
        program = sorted(i["program_seconds"] for i in info)[len(info) // 2]
        results.evaluate.append(Row(f"{n}", result, {"resources": info[0]["resources"], "program": program}))
    if options.profiles_dir is not None:
        n = max(options.sizes)
        path = _generate(n, PREVIEW_VARIANT, options.work, results)
        prof = options.work / f"evaluate-{n}.prof"
        log(f"start profile of evaluation N={n}")
        run([python, "-m", "bench.evaluate", str(path), "--profile", str(prof)], env={}, cwd=REPO)
        text = profiles.cprofile_summary(prof, title=f"Program evaluation under Pulumi mocks, N = {n}")
        (options.profiles_dir / f"evaluate-{n}.txt").write_text(text)
        results.profile_notes[f"evaluate-{n}"] = profiles.areas(prof)
        log(f"end   profile of evaluation N={n}: bench/profiles/evaluate-{n}.txt")


def _preview_env(skip: bool) -> dict[str, str]:
    return {"PULUMI_SKIP_CHECKPOINTS": "true"} if skip else {}


def measure_preview(project: Project, options: Options, results: Results) -> None:
    """2. ``pulumi preview`` of a fresh stack (nothing in state) against the local control plane."""
    variants = [False, True] if options.skip_checkpoints_variant else [False]
    for n in options.sizes:
        path = _generate(n, PREVIEW_VARIANT, options.work, results)
        stack = f"bench-preview-{n}"
        project.init_stack(stack, path)
        for skip in variants:
            label = "PULUMI_SKIP_CHECKPOINTS=true" if skip else "default"
            logs = options.work / "logs"
            limit = options.cap if n >= options.large_from and not skip else 1800.0
            result = _timed(
                f"pulumi preview N={n} ({label})" + (f", stopped after {limit:.0f} s" if limit < 1800 else ""),
                _runs(n, options, slow=True),
                lambda s=stack, k=skip, lg=logs, nn=n, t=limit: measure_run(
                    project.command("preview", s),
                    cwd=project.dir,
                    env={**project.env, **_preview_env(k)},
                    log=lg / f"preview-{nn}-{'skip' if k else 'default'}.log",
                    timeout=t,
                ),
            )
            last = result.samples[-1]
            results.preview.append(
                Row(f"{n}", result, {"variant": label, "resources": None if last.timed_out else _count(last)})
            )
        if options.profiles_dir is not None and n == max(options.sizes):
            _profile_preview(project, stack, n, options, results)


def _count(sample: Sample) -> int | None:
    """Resources in a preview/up summary (``+ 7203 to create``, ``~ 1 to update``, ``92 unchanged``)."""
    total, found = 0, False
    summary = sample.output.split("Resources:")[-1]
    for line in summary.splitlines():
        words = line.replace("+", " ").replace("~", " ").replace("-", " ").split()
        if "changes." in words:  # "7 changes. 92 unchanged": only the unchanged count is new
            words = words[words.index("changes.") + 1 :]
        if len(words) >= 2 and words[0].isdigit():
            total += int(words[0])
            found = True
    return total if found else None


def _changes(sample: Sample) -> str:
    """The change summary of a preview/up, e.g. ``+6 ~1 =92``."""
    summary = sample.output.split("Resources:")[-1].split("Duration:")[0]
    marks = {"create": "+", "created": "+", "update": "~", "updated": "~", "delete": "-", "deleted": "-"}
    parts: list[str] = []
    for line in summary.splitlines():
        words = line.replace("+", " ").replace("~", " ").replace("-", " ").split()
        if "changes." in words:
            words = words[words.index("changes.") + 1 :]
        if len(words) >= 2 and words[0].isdigit():
            parts.append(f"{marks.get(words[-1], '=' if words[-1] == 'unchanged' else '?')}{words[0]}")
    return " ".join(parts)


def _profile_preview(project: Project, stack: str, n: int, options: Options, results: Results) -> None:
    """One more preview with the program under cProfile and the engine's own CPU profile."""
    assert options.profiles_dir is not None
    main = project.dir / "__main__.py"
    original = main.read_text()
    shutil.copyfile(Path(__file__).parent / "profiled_main.py", main)
    prof = options.work / f"preview-{n}.prof"
    engine_prefix = options.work / f"engine-{n}"
    skip = options.skip_checkpoints_variant
    log(
        f"start profiled pulumi preview N={n} (cProfile of the program, --profiling of the engine"
        + (", PULUMI_SKIP_CHECKPOINTS=true)" if skip else ")")
    )
    try:
        sample = measure_run(
            [*project.command("preview", stack), "--profiling", str(engine_prefix)],
            cwd=project.dir,
            env={**project.env, **_preview_env(skip), "BENCH_PROFILE": str(prof)},
            timeout=1800 if skip else options.cap,
            log=options.work / "logs" / f"preview-{n}-profiled.log",
        )
    finally:
        main.write_text(original)
    log(f"end   profiled pulumi preview N={n}: {sample.seconds:.1f} s (exit {sample.returncode})")
    for big in (*options.work.glob(f"engine-{n}.*.trace"), *options.work.glob(f"engine-{n}.*.mem")):
        big.unlink()  # the execution trace alone is hundreds of MB at N = 1000
    if prof.exists():
        text = profiles.cprofile_summary(prof, title=f"The program during `pulumi preview` of a fresh stack, N = {n}")
        (options.profiles_dir / f"preview-{n}-program.txt").write_text(text)
        results.profile_notes[f"preview-{n}"] = profiles.areas(prof)
    cpu = next(iter(sorted(options.work.glob(f"engine-{n}.*.cpu"))), None)
    pulumi = shutil.which("pulumi", path=project.env.get("PATH"))
    if cpu is not None and pulumi is not None:
        text2 = profiles.pprof_summary(pulumi, cpu, title=f"The engine during `pulumi preview`, N = {n}")
        if text2 is not None:
            (options.profiles_dir / f"preview-{n}-engine.txt").write_text(text2)
            results.profile_notes[f"engine-{n}"] = profiles.pprof_top_functions(text2, ENGINE_FUNCTIONS)
    results.profile_notes[f"profiled-preview-{n}-seconds"] = sample.seconds
    results.profile_notes[f"profiled-preview-{n}-skip"] = skip


def measure_up(project: Project, options: Options, results: Results, n: int, *, big: bool = False) -> None:
    """3 and 4: ``pulumi up`` of a fresh stack, kubectl of the same objects, then one more freelancer.

    With ``big`` (the largest size) only the setup and step 4 run, and the setup's ``up`` has the engine's
    per-step checkpoints off: with them, its cost grows with the square of the stack (about 5 hours at
    N = 1000 on 2 cores, extrapolated from N = 100), which is not what step 4 measures."""
    variant = BIG_UP_VARIANT if big else UP_VARIANT
    path = _generate(n, variant, options.work, results)
    stack = f"bench-up-{n}"
    project.init_stack(stack, path)
    logs = options.work / "logs"
    setup_env = _preview_env(big)
    setting = ", PULUMI_SKIP_CHECKPOINTS=true" if big else ""
    up = _timed(
        f"pulumi up N={n} (fresh stack, policy pack{setting})",
        1,
        lambda: _up(project, stack, env={**project.env, **setup_env}, log_file=logs / f"up-{n}.log"),
    )
    side = "pulumi up" + (", PULUMI_SKIP_CHECKPOINTS=true" if big else "")
    results.up.append(Row(f"{n}", up, {"side": side, "resources": _count(up.samples[0])}))

    if not big and options.skip_checkpoints_variant:
        # The same, with the engine's per-step state checkpoints off (only the final state is written).
        spath = _generate(n, UP_SKIP_VARIANT, options.work, results)
        sstack = f"bench-up-skip-{n}"
        project.init_stack(sstack, spath)
        skipped = _timed(
            f"pulumi up N={n} (fresh stack, policy pack, PULUMI_SKIP_CHECKPOINTS=true)",
            1,
            lambda: _up(project, sstack, env={**project.env, **_preview_env(True)}, log_file=logs / f"up-{n}-skip.log"),
        )
        results.up.append(
            Row(
                f"{n}",
                skipped,
                {"side": "pulumi up, PULUMI_SKIP_CHECKPOINTS=true", "resources": _count(skipped.samples[0])},
            )
        )

    if not big:
        # The same objects through kubectl, in other namespaces (another roster variant).
        kpath = _generate(n, KUBECTL_VARIANT, options.work, results)
        manifest = options.work / f"manifest-{n}.yaml"
        run([sys.executable, "-m", "bench.evaluate", str(kpath), "--render", str(manifest)], env={}, cwd=REPO)
        documents = manifest.read_text().count("\napiVersion:") + 1
        script = kubectl.apply_script(manifest, _namespaces(kpath))
        result = _timed(
            f"kubectl apply --server-side N={n} (+ wait for PVCs Bound, StatefulSets rolled out)",
            1,
            lambda: measure_run(["bash", "-c", script], env=project.env, log=logs / f"kubectl-{n}.log"),
        )
        results.up.append(Row(f"{n}", result, {"side": "kubectl apply --server-side", "resources": documents}))

    data = roster.generate(n, variant=variant)
    one_more_freelancer(project, options, results, stack, data=data, variant=variant, label=f"{n}")


def one_more_freelancer(
    project: Project, options: Options, results: Results, stack: str, *, data: dict[str, Any], variant: int, label: str
) -> None:
    """4. Add one freelancer to ``stack``'s roster ``data``: preview (as is, and with checkpoints off), then up."""
    logs = options.work / "logs"
    bigger = roster.add_freelancer(data, variant=variant)
    n = len(data["freelancers"])
    project.set_roster(stack, roster.write(bigger, options.work / "rosters" / f"roster-{n}+1-{variant:04x}.yaml"))
    for skip in [False, True] if options.skip_checkpoints_variant else [False]:
        command = "pulumi preview" + (", PULUMI_SKIP_CHECKPOINTS=true" if skip else "")
        preview = _timed(
            f"{command} {stack} + 1 freelancer",
            _runs(n, options, slow=True),
            lambda k=skip: measure_run(
                project.command("preview", stack),
                cwd=project.dir,
                env={**project.env, **_preview_env(k)},
                log=logs / f"preview-{stack}+1{'-skip' if k else ''}.log",
            ),
        )
        sample = preview.samples[0]
        extra = {"command": command, "resources": _count(sample), "changes": _changes(sample)}
        results.incremental.append(Row(label, preview, extra))
    up1 = _timed(
        f"pulumi up {stack} + 1 freelancer",
        1,
        lambda: _up(project, stack, env=project.env, log_file=logs / f"up-{stack}+1.log"),
    )
    extra = {"command": "pulumi up", "resources": _count(up1.samples[0]), "changes": _changes(up1.samples[0])}
    results.incremental.append(Row(label, up1, extra))


def measure_client_stack(project: Project, options: Options, results: Results) -> None:
    """The split layout's unit, measured: a stack holding one client of ``CLIENT_STACK_FREELANCERS`` (the
    generator's average client), up, then one more freelancer as in step 4. With one stack per client,
    this is what a one-freelancer roster change costs whatever the roster's size."""
    n = CLIENT_STACK_FREELANCERS
    data = roster.generate(n, variant=CLIENT_STACK_VARIANT, clients=1)
    path = roster.write(data, options.work / "rosters" / f"roster-{n}-{CLIENT_STACK_VARIANT:04x}.yaml")
    stack = "bench-client-stack"
    project.init_stack(stack, path)
    _timed(
        f"pulumi up {stack} (1 client, {n} freelancers)",
        1,
        lambda: _up(project, stack, env=project.env, log_file=options.work / "logs" / "up-client.log"),
    )
    one_more_freelancer(
        project, options, results, stack, data=data, variant=CLIENT_STACK_VARIANT, label=CLIENT_STACK_LABEL
    )


def cleanup(project: Project | None, env: dict[str, str], work: Path) -> None:
    """Drop the benchmark stacks' state, delete the benchmark's namespaces and their released volumes."""
    if project is not None:
        project.drop_stacks()
    names: set[str] = set()
    for path in (work / "rosters").glob("roster-*.yaml"):
        names.update(_namespaces(path))
    existing = run(["kubectl", "get", "namespaces", "-o", "name"], env=env).stdout.split()
    # Namespaces left by an interrupted earlier run: bench client ids all start with be0c.
    names.update(
        n.removeprefix("namespace/") for n in existing if n.startswith(f"namespace/client-{roster.CLIENT_PREFIX}")
    )
    if names:
        log(f"cleanup: deleting {len(names)} benchmark namespaces")
        delete_namespaces(names, env)
    pvs = json.loads(run(["kubectl", "get", "pv", "-o", "json"], env=env).stdout)["items"]
    ours = [
        pv["metadata"]["name"]
        for pv in pvs
        if str(pv["spec"].get("claimRef", {}).get("namespace", "")).startswith(f"client-{roster.CLIENT_PREFIX}")
    ]
    if ours:
        log(f"cleanup: deleting {len(ours)} released benchmark volumes")
        for start in range(0, len(ours), 200):
            run(["kubectl", "delete", "pv", "--wait=false", "--ignore-not-found", *ours[start : start + 200]], env=env)
