"""What an interrupted update leaves behind, and how the orchestrator resolves it before the next one.

A Pulumi update killed with SIGKILL (or by the out-of-memory killer, or a machine crash) cannot clean up:

- **its stack lock** (file and other self-managed backends): every later update of the stack is refused
  with "the stack is currently locked". A lock is removed only when it is *provably* stale: it names this
  machine, the process it names is not running (or is a younger process that reused the pid), and it is
  a file in a local directory, so exactly that lock is deleted, never one another run has just taken
  (which ``pulumi cancel`` would do: it deletes every lock of the stack). Anything else is refused with a
  message naming the stack, who holds the lock and since when.
- **a torn attributes file** (file backend): the backend writes each state file to a temporary file,
  then its ``.attrs`` sidecar, then renames the temporary file into place. Killed between the sidecar's
  creation and its write, it leaves an empty sidecar beside the previous, complete state, and every
  command that reads the stack, ``pulumi stack ls`` included, fails with "EOF". An empty sidecar is
  removed (:func:`torn_sidecars`): a missing one reads as default attributes, and the state file it
  describes is the last one completely written.
- **pending operations** in the stack's state: the engine records an operation before it asks the
  provider and clears it when the answer comes back. The engine drops pending updates and deletes by
  itself after the next update (refreshing or updating the object again settles them), but keeps pending
  *creates* forever, for a person to resolve: the object may or may not exist. :func:`plan_repair`
  resolves each one: an object whose resource a later update already recorded is done; a Kubernetes
  object is imported by its namespace and name (the refresh that follows reads it from the cluster and
  drops it from the state if it does not exist); anything else (a component, a provider) has nothing
  outside the state and is cleared. ``pulumi refresh --import-pending-creates`` does not do this in the
  engine version pinned here: it turns the operation into a pending import that the refresh then drops,
  so the object is neither in the state nor deleted (checked on the real engine).
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

LOCKED = "the stack is currently locked by"
"""How the engine starts the error of an operation refused on a lock (self-managed backends)."""
_LOCK_LINE = re.compile(
    r"^\s*(?P<url>\S+): created by (?P<user>\S+?)@(?P<host>\S+) \(pid (?P<pid>\d+)\) at (?P<at>\S+)\s*$", re.MULTILINE
)
# A process whose start is later than the lock's timestamp by more than this reused the lock's pid (the
# timestamp in the message has whole seconds).
_PID_REUSE_MARGIN = timedelta(seconds=2)


@dataclass(frozen=True)
class Lock:
    """One lock of a stack, as the engine describes it when it refuses an operation."""

    url: str
    user: str
    host: str
    pid: int
    since: datetime

    def describe(self) -> str:
        return f"{self.user}@{self.host}, pid {self.pid}, since {self.since:%Y-%m-%d %H:%M:%S} UTC"


def parse_locks(message: str) -> list[Lock]:
    """The locks listed in an engine error (empty when the error is not about a lock)."""
    if LOCKED not in message:
        return []
    locks = []
    for match in _LOCK_LINE.finditer(message):
        try:
            since = datetime.fromisoformat(match["at"].replace("Z", "+00:00"))
        except ValueError:
            continue
        locks.append(Lock(match["url"], match["user"], match["host"], int(match["pid"]), since))
    return locks


def process_start(pid: int, proc: Path = Path("/proc")) -> datetime | None:
    """When process ``pid`` started on this machine, or None if no such process is running (a zombie is
    not running)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot = next(
            int(line.split()[1]) for line in (proc / "stat").read_text().splitlines() if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    # Fields after the command name, which is in parentheses and may itself contain spaces or parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    ticks = int(fields[19])  # field 22 of stat(5): start time, in clock ticks after boot
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def stale_reason(
    lock: Lock,
    *,
    hostname: str | None = None,
    started: Callable[[int], datetime | None] = process_start,
) -> str | None:
    """Why ``lock`` is provably stale (a sentence for the log), or None when it may belong to a running
    update (another machine's, or a process of this one that is still running)."""
    if lock.host != (hostname or socket.gethostname()):
        return None
    start = started(lock.pid)
    if start is None:
        return f"pid {lock.pid} is no longer running on {lock.host}"
    if start > lock.since + _PID_REUSE_MARGIN:
        return f"pid {lock.pid} on {lock.host} is a later process (started {start:%H:%M:%S}) than the lock's"
    return None


def stack_locks(directory: Path, project: str, stack: str) -> list[Lock]:
    """The locks a file backend in ``directory`` holds on ``stack`` (each a JSON file the engine writes when
    it starts an update and deletes when it ends); an unreadable lock file is listed as held by nobody
    known, so it is never taken for stale."""
    locks = []
    for path in sorted((directory / ".pulumi" / "locks").glob(f"*/{project}/{stack}/*.json")):
        try:
            data = json.loads(path.read_text())
            since = datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00"))
            lock = Lock(path.as_uri(), str(data["username"]), str(data["hostname"]), int(data["pid"]), since)
        except (OSError, ValueError, KeyError, TypeError):
            lock = Lock(path.as_uri(), "?", "?", 0, datetime.now(UTC))
        locks.append(lock)
    return locks


def lock_file(lock: Lock) -> Path | None:
    """The lock's file when the backend is a local directory (``file://``), else None."""
    parsed = urlparse(lock.url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return Path(unquote(parsed.path))


def remove_lock(path: Path) -> None:
    """Delete one lock file and the attributes file the backend keeps beside it."""
    for candidate in (path, path.with_name(path.name + ".attrs")):
        candidate.unlink(missing_ok=True)


def backend_directory(url: str | None) -> Path | None:
    """The local directory of a ``file://`` backend URL (``PULUMI_BACKEND_URL``), else None."""
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    path = unquote(parsed.path)
    return Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)


def torn_sidecars(directory: Path) -> list[Path]:
    """The empty ``.attrs`` sidecars of a file backend: each one a write killed between creating and filling
    it (see the module docstring)."""
    bookkeeping = directory / ".pulumi"
    if not bookkeeping.is_dir():
        return []
    torn = []
    for root, _, files in os.walk(bookkeeping):
        for name in files:
            if name.endswith(".attrs"):
                path = Path(root) / name
                try:
                    if path.stat().st_size == 0:
                        torn.append(path)
                except OSError:
                    continue  # removed meanwhile
    return sorted(torn)


def refused_message(stack: str, locks: list[Lock], reasons: dict[Lock, str]) -> str:
    """What a person reads when an operation is refused on a lock the orchestrator may not remove."""
    holders = "; ".join(lock.describe() for lock in locks) or "a lock the engine did not describe"
    if locks and all(lock in reasons for lock in locks):
        return (
            f"stack {stack} is locked by an update that is no longer running ({holders}: "
            f"{'; '.join(reasons.values())}), and its backend is not a local directory: "
            f"remove the lock with `pulumi cancel --stack {stack}`, then run again"
        )
    return (
        f"stack {stack} is being updated by another run ({holders}): refused, nothing was changed; "
        "run again when it has finished (if that run is known to be dead, "
        f"`pulumi cancel --stack {stack}` removes its lock)"
    )


# ---- pending operations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repair:
    """How to resolve the pending operations of one stack's state."""

    deployment: dict[str, Any]
    """The exported state (``pulumi stack export``) with every pending operation resolved."""
    imported: tuple[tuple[str, str], ...]
    """(URN, provider ID) of each Kubernetes object whose create was interrupted, now recorded: the
    refresh that follows reads it from the cluster, or drops it when it does not exist."""
    cleared: tuple[tuple[str, str], ...]
    """(operation, URN) of each pending operation dropped with nothing to import."""

    def describe(self) -> str:
        parts = []
        if self.imported:
            parts.append(f"{len(self.imported)} interrupted create(s) recorded by name, to be read from the cluster")
        if self.cleared:
            kinds = sorted({op for op, _ in self.cleared})
            parts.append(f"{len(self.cleared)} pending operation(s) cleared ({', '.join(kinds)})")
        return "; ".join(parts)


def kubernetes_id(resource: dict[str, Any]) -> str | None:
    """The provider ID of a pulumi-kubernetes object (``namespace/name``, or ``name`` when cluster-scoped)
    from the inputs of its pending create; None when it is not a Kubernetes object with a name."""
    if not resource.get("custom") or not str(resource.get("type", "")).startswith("kubernetes:"):
        return None
    metadata = (resource.get("inputs") or {}).get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        return None
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if isinstance(namespace, str) and namespace else metadata["name"]


def plan_repair(exported: dict[str, Any]) -> Repair | None:
    """How to resolve the pending operations of an exported state; None when there are none."""
    deployment = exported.get("deployment") or {}
    pending = deployment.get("pending_operations") or []
    if not pending:
        return None
    repaired = copy.deepcopy(exported)
    resources: list[dict[str, Any]] = repaired["deployment"].setdefault("resources", [])
    recorded = {r.get("urn") for r in resources}
    imported: list[tuple[str, str]] = []
    cleared: list[tuple[str, str]] = []
    for operation in pending:
        kind = str(operation.get("type"))
        resource = operation.get("resource") or {}
        urn = str(resource.get("urn"))
        resource_id = kubernetes_id(resource)
        if kind == "creating" and urn not in recorded and resource_id is not None:
            # Appended last: nothing in the state can depend on a resource whose create never completed.
            # Its outputs come from the cluster in the refresh that follows.
            resources.append({**copy.deepcopy(resource), "id": resource_id, "outputs": {}})
            recorded.add(urn)
            imported.append((urn, resource_id))
        else:
            cleared.append((kind, urn))
    repaired["deployment"]["pending_operations"] = []
    return Repair(repaired, tuple(imported), tuple(cleared))
