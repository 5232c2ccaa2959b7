"""Which stacks a change touches, decided by comparing the plans of the base and the new roster.

A client stack is touched when its slice of the plan differs (a sandbox added, archived, resized, a tier
or a name changed, a client added to the group) and the platform stack when the platform's plan does
(with a platform database, that includes the roster's records: a freelancer's email too).
Anything that is not the roster (the program, the policy pack, the settings file, the dependencies)
can change what every stack declares, so a change to any of it touches all. Slices that the base had
and the new roster lacks are *removed*: the orchestrator never runs them (that would delete their
namespaces) and lists them for a person to offboard.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sandbox_infra.environment import Environment
from sandbox_infra.plan import PLATFORM_SLICE, Plan, PlatformPlan, SandboxPlan, SlicePlan, TenantPlan
from sandbox_infra.source import InputError, Positions, load_yaml

# Paths (relative to the project directory) whose change can alter every stack.
PROGRAM_PATHS = ("sandbox_infra", "policies", "__main__.py", "Pulumi.yaml", "requirements.txt")


@dataclass(frozen=True)
class Touched:
    """The outcome of change detection: slice id -> why it must run, and the slices that went away."""

    slices: dict[str, str]
    removed: tuple[str, ...] = ()


def _short(value: object) -> str:
    return str(value)[:8]


def _sandbox_change(old: SandboxPlan, new: SandboxPlan) -> str:
    fields = [
        name
        for name, before, after in (
            ("tier", old.tier, new.tier),
            ("state", old.state, new.state),
            ("resources", old.resources, new.resources),
            ("gpu", old.gpu, new.gpu),
            ("image", old.gemini_cli_image, new.gemini_cli_image),
            ("code-server image", old.code_server_image, new.code_server_image),
            ("workspace", old.workspace, new.workspace),
            ("home", old.home, new.home),
        )
        if before != after
    ]
    return f"sandbox {_short(new.freelancer_id)} {', '.join(fields)}"


def _tenant_changes(old: TenantPlan | None, new: TenantPlan | None) -> list[str]:
    if old is None and new is not None:
        return [f"client {_short(new.client_id)} added"]
    if new is None and old is not None:
        return [f"client {_short(old.client_id)} left the group"]
    assert old is not None and new is not None
    changes: list[str] = []
    if old.client_name != new.client_name:
        changes.append(f"client {_short(new.client_id)} renamed")
    before = {s.freelancer_id: s for s in old.sandboxes}
    after = {s.freelancer_id: s for s in new.sandboxes}
    changes += [f"sandbox {_short(f)} added" for f in after if f not in before]
    changes += [f"sandbox {_short(f)} removed" for f in before if f not in after]
    changes += [_sandbox_change(before[f], after[f]) for f in after if f in before and before[f] != after[f]]
    if not changes and old != new:
        changes.append(f"client {_short(new.client_id)} settings")
    return changes


def describe(old: SlicePlan | None, new: SlicePlan) -> str:
    """A short reason a reviewer can read: what changed in this slice."""
    if old is None:
        return "new stack"
    before = {t.client_id: t for t in old.tenants}
    after = {t.client_id: t for t in new.tenants}
    changes: list[str] = []
    for client_id in dict.fromkeys([*before, *after]):
        if before.get(client_id) != after.get(client_id):
            changes += _tenant_changes(before.get(client_id), after.get(client_id))
    if len(changes) > 3:
        return "; ".join(changes[:3]) + f"; and {len(changes) - 3} more"
    return "; ".join(changes) or "changed"


def describe_platform(old: PlatformPlan, new: PlatformPlan) -> str:
    """Why the platform stack runs: the roster's records in its database, or its settings."""
    if (
        old.database is not None
        and new.database is not None
        and replace(old, database=replace(old.database, records=new.database.records)) == new
    ):
        rows = old.database.records.changed_rows(new.database.records)
        one = {"clients": "client", "freelancers": "freelancer", "sandboxes": "sandbox"}
        return "database records changed: " + ", ".join(
            f"{n} {one[table] if n == 1 else table}" for table, n in rows.items() if n
        )
    return "platform settings changed"


def touched(base: Plan | None, head: Plan, *, everything: str | None = None) -> Touched:
    """The slices whose plan differs between ``base`` and ``head`` (all of them when ``everything`` gives a
    reason, or when there is no base to compare with)."""
    removed = tuple(s.id for s in base.slices if head.slice(s.id) is None) if base is not None else ()
    if base is None or everything is not None:
        reason = everything or "no base to compare with"
        return Touched({PLATFORM_SLICE: reason, **{s.id: reason for s in head.slices}}, removed)
    slices: dict[str, str] = {}
    if base.platform != head.platform:
        slices[PLATFORM_SLICE] = describe_platform(base.platform, head.platform)
    for group in head.slices:
        old = base.slice(group.id)
        if old != group:
            slices[group.id] = describe(old, group)
    return Touched(slices, removed)


class ShardError(ValueError):
    """A ``--shard`` that is not ``I/N``."""


def shard(stacks: Sequence[str], spec: str | None) -> list[str]:
    """The stacks of shard ``I/N`` (1-based), by position in name order, so every shard of a CI matrix
    computes the same split independently."""
    if spec is None:
        return list(stacks)
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ShardError(f"--shard {spec}: expected I/N with 1 <= I <= N, e.g. 2/4")
    index, total = int(match[1]), int(match[2])
    return [s for i, s in enumerate(sorted(stacks)) if i % total == index - 1]


class BaseError(ValueError):
    """A ``--base`` that is neither a readable roster file nor a git revision of this project."""


def _git(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class Base:
    """The base of a change: its roster as data (for ``check --previous``), its plan when it is valid today,
    and why every stack counts as touched, if it does."""

    name: str
    data: object
    positions: Positions
    plan: Plan | None
    everything: str | None


def load_base(environment: Environment, base: str) -> Base:
    """Read the base of a change: a roster file, or a git revision of the project (whose roster is read, and
    at which a difference in anything but the roster touches every stack)."""
    if Path(base).is_file():
        return _base(environment, Path(base), base, None)
    if _git(environment.project_dir, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").returncode != 0:
        raise BaseError(f"--base {base}: neither a roster file nor a git revision of {environment.project_dir}")
    paths = (*PROGRAM_PATHS, environment.settings_file.name)
    everything = None
    if _git(environment.project_dir, "diff", "--quiet", base, "--", *paths).returncode == 1:
        changed = _git(environment.project_dir, "diff", "--name-only", base, "--", *paths).stdout.split()
        everything = f"{', '.join(changed[:3])}{' …' if len(changed) > 3 else ''} changed since {base}"
    name = f"{base}:{environment.settings.roster}"
    shown = _git(environment.project_dir, "show", f"{base}:./{environment.settings.roster}")
    if shown.returncode != 0:
        return Base(name, {}, Positions(name), None, everything or f"{name} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "base-roster.yaml"
        copy.write_text(shown.stdout, encoding="utf-8")
        return _base(environment, copy, name, everything)


def _base(environment: Environment, path: Path, name: str, everything: str | None) -> Base:
    try:
        data, positions = load_yaml(path, display_name=name)
    except InputError as exc:
        raise BaseError(f"--base {name}: {exc.diagnostics[0]}") from exc
    try:
        plan: Plan | None = environment.plan(environment.validate(data, positions))
    except InputError:
        plan = None  # an older roster need not be valid under today's rules: then compare nothing
    return Base(name, data, positions, plan, everything or (None if plan else f"{name} is not a valid roster today"))
