"""The plan, handed from the orchestrator to the stacks it runs, so no stack parses the roster again.

Every stack's program validates the whole roster (see :mod:`sandbox_infra.program`). When the orchestrator
starts the stacks it has already done that, for the same roster bytes and the same settings: at 10,000
freelancers a parse is about 3 CPU-seconds and its memory is held in every program process at once. So
the orchestrator writes each stack's part of the plan into a private directory of its own
(:func:`write`) and names the directory in :data:`PLAN_DIR_ENV`; the program takes its part only when
the key matches, i.e. the roster file still has the bytes the orchestrator validated and the stack's
settings are the environment's (:func:`receive`). In any other case, or without the orchestrator
(`pulumi up` by hand), the program loads and validates the roster itself, as it always can.

The files are pickles of the plan's frozen dataclasses, read only from a directory the orchestrator
created for this run with mode 0700 and deletes when the run ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox_infra.plan import ALL_SLICES, PLATFORM_SLICE, Plan, PlatformPlan
from sandbox_infra.settings import StackSettings

PLAN_DIR_ENV = "SANDBOX_INFRA_PLAN_DIR"
"""The environment variable naming the run's plan directory."""


@dataclass(frozen=True)
class _Envelope:
    key: str
    plan: Plan


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes; None when it cannot be read (the roster loader then reports why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def key(roster_digest: str, settings: StackSettings) -> str:
    """What a plan was computed from: the roster's bytes and the settings every stack of the environment
    shares (``slice`` and ``environment`` are each stack's own and do not change the plan)."""
    shared = dataclasses.replace(settings, slice="", environment="")
    fields = {f.name: getattr(shared, f.name) for f in dataclasses.fields(shared)}
    canonical = json.dumps(fields, sort_keys=True, default=lambda v: sorted(v) if isinstance(v, frozenset) else str(v))
    return hashlib.sha256(f"{roster_digest}\n{canonical}".encode()).hexdigest()


def part(plan: Plan, slice_id: str) -> Plan:
    """The plan a stack of ``slice_id`` needs: the platform's for the platform stack; for a client stack only
    its own client group (and the platform's namespace facts, not its services or the roster's database
    records: at 10,000 freelancers those are 4.5 MB that every client stack would read back for nothing)."""
    if slice_id == ALL_SLICES:
        return plan
    if slice_id == PLATFORM_SLICE:
        return Plan(plan.platform, ())
    group = plan.slice(slice_id)
    platform = PlatformPlan(plan.platform.namespace, plan.platform.pod_security_version)
    return Plan(platform, (group,) if group else ())


def write(directory: Path, plan: Plan, plan_key: str, slices: Iterable[str]) -> None:
    """Write each slice's part of ``plan`` into ``directory`` (created by :func:`plan_directory`)."""
    for slice_id in slices:
        envelope = _Envelope(plan_key, part(plan, slice_id))
        (directory / f"{slice_id}.pickle").write_bytes(pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL))


@contextmanager
def plan_directory() -> Iterator[Path]:
    """A private directory (mode 0700) for one run's plans, removed when the run ends."""
    directory = Path(tempfile.mkdtemp(prefix="sandbox-infra-plan-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def receive(settings: StackSettings, roster_path: Path, environ: Mapping[str, str] = os.environ) -> Plan | None:
    """The orchestrator's plan for this stack, if it handed one over for exactly this roster and these settings."""
    directory = environ.get(PLAN_DIR_ENV)
    name = f"{settings.slice}.pickle"
    if not directory or Path(name).name != name:
        return None
    path = Path(directory) / name
    digest = file_digest(roster_path)
    if digest is None or not path.is_file():
        return None
    envelope = pickle.loads(path.read_bytes())
    if not isinstance(envelope, _Envelope) or envelope.key != key(digest, settings):
        return None
    return envelope.plan
