"""Command line: ``check`` a roster (what roster pull requests run) and print its JSON ``schema``.

``check`` needs neither Pulumi nor a cluster: it reads the roster and the stack's settings file
(``Pulumi.<stack>.yaml``, for limits and which secrets are set) and reports every problem, one per line,
as ``FILE:LINE:COL: PATH: MESSAGE``. Exit status: 0 valid, 1 invalid, 2 usage or settings error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from sandbox_infra.offboarding import removals
from sandbox_infra.roster import Roster, SandboxState, load_roster
from sandbox_infra.schema import roster_schema
from sandbox_infra.settings import SettingsError, StackSettings, settings_from_stack_file
from sandbox_infra.source import InputError, load_yaml


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
        errors, notes = removals(previous, positions, roster)
        for diagnostic in notes:
            print(f"note: {diagnostic}", file=sys.stderr)
        if errors:
            for diagnostic in errors:
                print(diagnostic)
            print(f"{args.roster}: {len(errors)} unsafe removal(s) compared with {args.previous}", file=sys.stderr)
            return 1
    print(f"{args.roster}: valid: {summary(roster)}")
    return 0


def _schema(_: argparse.Namespace) -> int:
    print(json.dumps(roster_schema(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox_infra", description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result
