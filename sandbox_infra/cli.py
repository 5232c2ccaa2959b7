"""Command line: ``check`` a roster, print its ``schema``, and run an environment's stacks.

``check`` needs neither Pulumi nor a cluster: it reads the roster and the stack's settings file
(``Pulumi.<stack>.yaml``, for limits and which secrets are set) and reports every problem, one per line,
as ``FILE:LINE:COL: PATH: MESSAGE``. ``plan`` lists the stacks a change touches; ``preview``, ``up`` and
``refresh`` run them (see :mod:`sandbox_infra.orchestrator`); ``drift`` previews every stack against the
cluster as it is (a refreshing preview) and lists each object a person changed by hand. ``report``
writes a roster pull request's change report (:mod:`sandbox_infra.report`), ``adopt`` moves resources
into the stacks the plan names (:mod:`sandbox_infra.adoption`), and ``database-script`` prints the SQL a
DBA runs for ``databaseRoles: existing``. Exit status: 0 success (for ``drift``: no drift), 1 invalid
roster or a failed stack, 2 usage or settings error, 3 drift found.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox_infra import parse_cache
from sandbox_infra.changes import BaseError, ShardError, Touched, load_base, shard, touched
from sandbox_infra.database_plan import dba_script
from sandbox_infra.environment import Environment, load_environment
from sandbox_infra.offboarding import removals
from sandbox_infra.plan import PLATFORM_SLICE, Plan
from sandbox_infra.roster import Roster, SandboxState, load_roster
from sandbox_infra.schema import roster_schema
from sandbox_infra.settings import CONFIG_NAMESPACE, SettingsError, StackSettings, settings_from_stack_file
from sandbox_infra.source import InputError, Positions, load_yaml

if TYPE_CHECKING:  # the engine's client: imported only by the commands that run stacks
    from sandbox_infra.orchestrator import Orchestrator, StackRun

DRIFT_FOUND = 3
"""Exit status of ``drift`` when some object differs from what the roster declares."""


def _settings(stack: str, project_dir: Path) -> tuple[StackSettings, str]:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return StackSettings(), f"Pulumi.{stack}.yaml"
    return settings_from_stack_file(path), path.name


def summary(roster: Roster) -> str:
    """One line a reviewer can read: how many of everything, by state and tier."""
    sandboxes = [s for _, s in roster.sandboxes()]
    states = Counter(s.state.value for s in sandboxes)
    tiers = Counter(s.tier.value for s in sandboxes if s.state is not SandboxState.ARCHIVED)
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    by_tier = ", ".join(f"{n} {tier}" for tier, n in sorted(tiers.items()))
    gpus = sum(1 for s in sandboxes if s.gpu)
    return (
        f"{len(roster.clients)} clients, {len(roster.freelancers)} freelancers, {len(sandboxes)} sandboxes"
        f" ({by_state or 'none'}; tiers: {by_tier or 'none'}; {gpus} with GPU)"
    )


def _check(args: argparse.Namespace) -> int:
    roster_path = Path(args.roster)
    try:
        settings, stack_file = _settings(args.stack, Path(args.project_dir))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        roster = load_roster(roster_path, settings, display_name=args.roster, stack_file=stack_file)
    except InputError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic)
        print(f"{args.roster}: {len(exc.diagnostics)} error(s)", file=sys.stderr)
        return 1
    if args.previous:
        try:
            previous, positions = load_yaml(Path(args.previous))
        except InputError as exc:
            for diagnostic in exc.diagnostics:
                print(diagnostic)
            return 1
        closing = f"{args.roster}: {{count}} unsafe change(s) compared with {args.previous}"
        if _unsafe_changes(previous, positions, roster, settings, closing=closing):
            return 1
    print(f"{args.roster}: valid: {summary(roster)}")
    return 0


def _unsafe_changes(
    previous: object, positions: Positions, roster: Roster, settings: StackSettings, *, closing: str
) -> bool:
    """Print what ``roster`` removes, moves or shrinks unsafely compared with ``previous`` (and any notes),
    then ``closing`` with ``{count}`` filled in; True if there was anything unsafe."""
    errors, notes = removals(previous, positions, roster, settings)
    for diagnostic in notes:
        print(f"note: {diagnostic}", file=sys.stderr)
    for diagnostic in errors:
        print(diagnostic)
    if errors:
        print(closing.format(count=len(errors)), file=sys.stderr)
    return bool(errors)


def _schema(_: argparse.Namespace) -> int:
    print(json.dumps(roster_schema(), indent=2))
    return 0


def _database_script(args: argparse.Namespace) -> int:
    """The SQL a DBA runs for ``databaseRoles: existing`` (docs/database.md)."""
    try:
        environment = load_environment(args.env, Path(args.project_dir))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not environment.settings.database_host:
        print(f"error: {environment.settings_file.name}: {CONFIG_NAMESPACE}:databaseHost is not set", file=sys.stderr)
        return 2
    print(dba_script(environment.settings.database_name), end="")
    return 0


def _open_orchestrator(environment: Environment, parallel: int | None) -> Future[Orchestrator]:
    """The orchestrator, opened in a thread while the plan is built: opening it lists the backend's stacks
    (``pulumi stack ls``, about a second with 500 stacks, on the other core). Started once the roster is
    known to be valid, since opening repairs what an interrupted write left in a file backend."""
    from sandbox_infra.orchestrator import Orchestrator  # the engine's client: not for plan

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrator")
    opening = pool.submit(Orchestrator, environment, parallel=parallel)
    pool.shutdown(wait=False)
    return opening


def _stacks(args: argparse.Namespace) -> int:
    """plan | preview | up | refresh | drift: the stacks a change touches (or all), through the orchestrator."""
    project_dir = Path(args.project_dir)
    try:
        shard([], args.shard)  # a malformed --shard is a usage error, found before anything runs
        environment = load_environment(args.env, project_dir)
        base = None
        if args.base:
            # The roster is parsed (into the parse cache) alongside the base: a change's two parses at once.
            with parse_cache.prefetch(environment.project_dir / environment.settings.roster, load_yaml):
                base = load_base(environment, args.base)
    except (SettingsError, BaseError, ShardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        roster, plan_key = environment.load_roster_keyed()
    except InputError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic)
        print(f"{environment.settings.roster}: {len(exc.diagnostics)} error(s); no stack was run", file=sys.stderr)
        return 1
    closing = f"{{count}} unsafe change(s) compared with {base.name if base else ''}; no stack was run"
    if base is not None and _unsafe_changes(base.data, base.positions, roster, environment.settings, closing=closing):
        return 1
    opening = None if args.command == "plan" else _open_orchestrator(environment, args.parallel)
    plan = environment.plan(roster)
    change = touched(
        base.plan if base else None, plan, everything=base.everything if base else "no --base: every stack"
    )
    known = {PLATFORM_SLICE, *(s.id for s in plan.slices)}
    unknown = sorted(o for o in args.only or [] if o not in known and o not in {environment.stack(k) for k in known})
    if unknown:
        print(f"error: --only {', '.join(unknown)}: no such slice or stack in {environment.name}", file=sys.stderr)
        return 2
    if opening is None:
        return _print_plan(environment, plan, change, args)
    from sandbox_infra.orchestrator import OrchestratorError, Report

    drift = args.command == "drift"
    operation = "preview" if drift else args.command
    _collect_from_here()
    try:
        orchestrator = opening.result()
        runs = orchestrator.select(plan, change, everything=args.all or drift)
        chosen = _selected(environment, [r.slice for r in runs], args)
        runs = [r for r in runs if r.stack in chosen]
        orphans = orchestrator.orphans(plan)
        print(
            f"==> {args.command} of {len(runs)} stack(s) of {environment.name}, "
            f"{orchestrator.parallelism(operation)} at a time",
            file=sys.stderr,
        )
        orchestrator.run(operation, plan, runs, refresh=args.refresh or drift, plan_key=plan_key)
    except OrchestratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if drift:
        _mark_drift(runs)
    report = Report(environment.name, args.command, runs, change.removed, tuple(orphans))
    drifted = [r for r in runs if r.status == "drifted"]
    if args.json:
        document = report.to_json()
        if drift:
            document["drift"] = {r.stack: r.changed for r in drifted}
        print(json.dumps(document, indent=2))
    else:
        print(report.table())
        if drift:
            print(_drift_lines(environment, runs, drifted))
    if any(r.status not in ("ok", "drifted") for r in runs):
        return 1
    return DRIFT_FOUND if drifted else 0


def _drift_lines(environment: Environment, runs: Sequence[StackRun], drifted: Sequence[StackRun]) -> str:
    """Each object that differs from what the roster declares, by stack, and how to restore them."""
    if not drifted:
        return f"no drift: the cluster matches every stack of {environment.name} ({len(runs)} checked)"
    lines = [f"drift in {r.stack}: {change}" for r in drifted for change in r.changed]
    objects = sum(len(r.changed) for r in drifted)
    lines.append(
        f"{objects} object(s) in {len(drifted)} of {len(runs)} stack(s) differ from the roster; to restore them: "
        f"python -m sandbox_infra up --env {environment.name} --refresh "
        + " ".join(f"--only {r.slice}" for r in drifted)
    )
    return "\n".join(lines)


def _mark_drift(runs: Sequence[StackRun]) -> None:
    """A stack whose refreshing preview shows anything but unchanged resources has drifted from the roster
    (a person changed the cluster by hand, or the roster in this checkout is not the one last applied)."""
    from sandbox_infra.orchestrator import format_changes

    for run in runs:
        changed = {op: n for op, n in run.changes.items() if op != "same" and n}
        if run.status == "ok" and changed:
            run.status, run.error = "drifted", f"the cluster differs from the roster: {format_changes(changed)}"


def _adopt(args: argparse.Namespace) -> int:
    """Move the single-stack layout (or a regrouped client) into the stacks the plan names, then prove it."""
    try:
        environment = load_environment(args.env, Path(args.project_dir), adopting=True)
        roster = environment.load_roster()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic)
        return 1
    plan = environment.plan(roster)
    source = args.source or environment.name
    from sandbox_infra.adoption import AdoptionError
    from sandbox_infra.orchestrator import Orchestrator, OrchestratorError, Report, format_changes

    _collect_from_here()
    try:
        orchestrator = Orchestrator(environment, parallel=args.parallel)
        moves = orchestrator.adopt(plan, source)
        if source == environment.name and environment.settings.slice != PLATFORM_SLICE:
            orchestrator.workspace.remove_config(source, f"{CONFIG_NAMESPACE}:slice")
            print(f"==> {environment.settings_file.name}: removed {CONFIG_NAMESPACE}:slice", file=sys.stderr)
        runs = orchestrator.select(plan, touched(None, plan, everything="adopted"), everything=True)
        orchestrator.run("preview", plan, runs)
    except (OrchestratorError, AdoptionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run in runs:
        changed = {op: n for op, n in run.changes.items() if op != "same" and n}
        if run.status == "ok" and changed:
            run.status, run.error = "failed", f"after the move the preview still shows {format_changes(changed)}"
    moved = sum(len(urns) for urns in moves.values())
    print(f"==> moved {moved} components from {source} into {len(moves)} stack(s)", file=sys.stderr)
    report = Report(environment.name, "adopt (preview after the move)", runs)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0 if report.ok else 1


def _report(args: argparse.Namespace) -> int:
    """The change report of the roster against ``--base`` (markdown or JSON); exit 1 when anything is refused,
    the roster is invalid or the preview given failed."""
    from sandbox_infra.report import ReportError, build_report, load_preview, to_json_text, to_markdown

    try:
        environment = load_environment(args.env, Path(args.project_dir))
        base = load_base(environment, args.base)
        preview = load_preview(Path(args.preview)) if args.preview else None
        report = build_report(environment, base, preview=preview)
    except (SettingsError, BaseError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = to_json_text(report) if args.format == "json" else to_markdown(report)
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(f"{output}: {args.format} report, {report.verdict}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0 if report.ok else 1


def _selected(environment: Environment, slices: Sequence[str], args: argparse.Namespace) -> set[str]:
    """The stacks of ``slices`` that ``--only`` and ``--shard`` keep (the same for plan and the runs)."""
    wanted = set(args.only or [])
    stacks = [environment.stack(s) for s in slices if not wanted or s in wanted or environment.stack(s) in wanted]
    return set(shard(stacks, args.shard))


def _print_plan(environment: Environment, plan: Plan, change: Touched, args: argparse.Namespace) -> int:
    chosen = _selected(environment, list(change.slices), args)
    stacks = {environment.stack(s): why for s, why in change.slices.items() if environment.stack(s) in chosen}
    if args.json:
        print(
            json.dumps({"environment": environment.name, "stacks": stacks, "removed": list(change.removed)}, indent=2)
        )
        return 0
    total = 1 + len(plan.slices)
    print(f"{environment.name}: {len(stacks)} of {total} stacks touched")
    for stack, why in stacks.items():
        print(f"  {stack}: {why}")
    for slice_id in change.removed:
        print(f"  {environment.stack(slice_id)}: its clients left the roster; never run (offboard it by hand)")
    return 0


def _collect_from_here() -> None:
    """Turn the cyclic garbage collector back on for a long run of stacks (minutes of engine events), without
    it ever traversing the roster and the plan built so far (see :func:`main`)."""
    gc.freeze()
    gc.enable()


def _stacks_at_a_time(text: str) -> int:
    """``--parallel``: a whole number of stacks, at least one (argparse turns the error into a usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of stacks, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 stack at a time, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    # The cyclic garbage collector traverses every object again and again while a roster's objects are built,
    # finds nothing in them to free, and costs a quarter of the CPU of planning 10,000 freelancers (4.2 to 4.9
    # against 5.7 to 6.8 CPU-s for `plan --base`, docs/benchmarks.md). Reading, checking and planning a roster
    # are short and bounded, so it is off until a command starts running stacks (_collect_from_here).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.unfreeze()
        if collecting:
            gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox_infra", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a roster file")
    check.add_argument("roster", nargs="?", default="roster.yaml", help="roster file (default: roster.yaml)")
    check.add_argument("--stack", default="dev", help="stack whose settings apply (default: dev)")
    check.add_argument("--project-dir", default=".", help="directory holding Pulumi.<stack>.yaml (default: .)")
    check.add_argument(
        "--previous",
        metavar="FILE",
        help="the roster before this change (e.g. from the base branch): "
        "entries removed without being archived first are errors",
    )
    check.set_defaults(run=_check)
    schema = commands.add_parser("schema", help="print the roster's JSON Schema")
    schema.set_defaults(run=_schema)
    script = commands.add_parser(
        "database-script", help="print the SQL that prepares the database roles for databaseRoles: existing"
    )
    script.add_argument("--env", default="dev", help="environment: settings in Pulumi.<env>.yaml (default: dev)")
    script.add_argument("--project-dir", default=".", help="directory holding Pulumi.yaml (default: .)")
    script.set_defaults(run=_database_script)
    adopt = commands.add_parser(
        "adopt", help="move resources into the stacks the roster says own them (from the single-stack layout)"
    )
    adopt.add_argument("--env", default="dev", help="environment: settings in Pulumi.<env>.yaml (default: dev)")
    adopt.add_argument("--from", dest="source", metavar="STACK", help="stack to move from (default: the env's)")
    adopt.add_argument(
        "--parallel", type=_stacks_at_a_time, help="stacks previewed at a time (default: one per core, within memory)"
    )
    adopt.add_argument("--json", action="store_true", help="print the summary as JSON")
    adopt.add_argument("--project-dir", default=".", help="directory holding Pulumi.yaml (default: .)")
    adopt.set_defaults(run=_adopt)
    report = commands.add_parser(
        "report", help="what a roster change does: who gets what, quotas, capacity, cost, data at risk (no engine)"
    )
    report.add_argument("--base", required=True, metavar="FILE|REV", help="the roster before the change")
    report.add_argument("--env", default="dev", help="environment: settings in Pulumi.<env>.yaml (default: dev)")
    report.add_argument("--format", choices=("markdown", "json"), default="markdown", help="default: markdown")
    report.add_argument("--preview", metavar="FILE", help="add the summary that `preview --json` wrote to FILE")
    report.add_argument("--output", metavar="FILE", help="write the report to FILE (default: standard output)")
    report.add_argument("--project-dir", default=".", help="directory holding Pulumi.yaml (default: .)")
    report.set_defaults(run=_report)
    for name, summary in (
        ("plan", "list the stacks a change touches, and why (no engine, no cluster)"),
        ("preview", "preview the stacks a change touches, with the policy pack"),
        ("up", "update the stacks a change touches (the platform stack first)"),
        ("refresh", "refresh the stacks' state from the cluster"),
        ("drift", "list what differs between the cluster and the roster (a refreshing preview of every stack)"),
    ):
        sub = commands.add_parser(name, help=summary)
        sub.add_argument("--env", default="dev", help="environment: settings in Pulumi.<env>.yaml (default: dev)")
        sub.add_argument("--base", metavar="FILE|REV", help="the roster before the change: a file or a git revision")
        sub.add_argument("--all", action="store_true", help="every stack, whatever the change touches")
        sub.add_argument("--only", action="append", metavar="SLICE", help="only this slice or stack (repeatable)")
        sub.add_argument("--shard", metavar="I/N", help="only the I-th of N equal parts of the stack list (CI matrix)")
        sub.add_argument(
            "--parallel",
            type=_stacks_at_a_time,
            help="stacks at a time (default: a preview one per core, an update one more; within memory)",
        )
        sub.add_argument("--refresh", action="store_true", help="refresh each stack's state before the operation")
        sub.add_argument("--json", action="store_true", help="print the summary as JSON")
        sub.add_argument("--project-dir", default=".", help="directory holding Pulumi.yaml (default: .)")
        sub.set_defaults(run=_stacks)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result
