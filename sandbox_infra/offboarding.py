"""What a roster change removes, compared with the previous roster (``check --previous``).

Deleting an entry is never how data goes away: every volume is ``protect``-ed, so ``pulumi up`` would
stop at the first volume it was asked to delete, and deleting a client's namespace would delete its
volumes whatever Pulumi thinks. Offboarding is therefore explicit (docs/offboarding.md):

1. set the sandbox's ``state: archived`` (compute and quota go, volumes stay) and ``pulumi up``;
2. release the volumes: ``pulumi state unprotect`` their URNs (``retain_on_delete`` keeps them in the
   cluster even after Pulumi forgets them), then remove the entry and ``pulumi up``;
3. delete or hand over the data with kubectl, outside Pulumi, once the client agrees.

This module lets a roster pull request fail early, with that explanation, when it skips step 1, when
it moves a client to another stack group (which would create its namespace in one stack and delete it
from another), and when it shrinks a volume (Kubernetes cannot shrink a PersistentVolumeClaim: the
update would fail half-way through the stack).
"""

from __future__ import annotations

from decimal import Decimal

from sandbox_infra.quantity import QuantityError, parse_quantity
from sandbox_infra.roster import Roster, SandboxEntry
from sandbox_infra.settings import StackSettings
from sandbox_infra.source import Diagnostic, PathKey, Positions

ARCHIVE_FIRST = "set `state: archived` first and update; volumes are only released deliberately (docs/offboarding.md)"
NO_SHRINK = "Kubernetes cannot shrink a volume claim; keep the size (or move the data to a new, smaller volume by hand)"

_Sandbox = tuple[int, int, str, object]  # (freelancer index, sandbox index, state, raw storage value)


def removal_refused(state: str) -> bool:
    """Removing a sandbox from the roster is refused unless it was archived first."""
    return state != "archived"


def volume_size(storage: object, volume: str, settings: StackSettings) -> Decimal | None:
    """The size a sandbox's ``volume`` has, from raw roster data (the stack default when unset); None when the
    value is not a quantity (the roster's own validation reports that)."""
    try:
        return parse_quantity(_size(storage, volume, settings))
    except QuantityError:
        return None


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _entries(data: object) -> tuple[dict[str, tuple[int, str | None]], dict[tuple[str, str], _Sandbox]]:
    """Client ids -> (index, stack group), and (freelancer id, client id) -> (freelancer index, sandbox
    index, state, storage), read leniently from raw roster data (the previous roster need not be valid today)."""
    clients: dict[str, tuple[int, str | None]] = {}
    sandboxes: dict[tuple[str, str], _Sandbox] = {}
    if not isinstance(data, dict):
        return clients, sandboxes
    for i, client in enumerate(_list(data.get("clients"))):
        if isinstance(client, dict) and "id" in client:
            stack = client.get("stack")
            clients[str(client["id"]).lower()] = (i, str(stack) if stack is not None else None)
    for i, freelancer in enumerate(_list(data.get("freelancers"))):
        if not isinstance(freelancer, dict):
            continue
        for j, sandbox in enumerate(_list(freelancer.get("sandboxes"))):
            if isinstance(sandbox, dict) and "client" in sandbox:
                key = (str(freelancer.get("id")).lower(), str(sandbox["client"]).lower())
                sandboxes[key] = (i, j, str(sandbox.get("state", "active")), sandbox.get("storage"))
    return clients, sandboxes


def removals(
    previous: object, positions: Positions, roster: Roster, settings: StackSettings | None = None
) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(errors, notes) for what ``roster`` drops or moves from ``previous`` and, given the stack's
    ``settings`` (for default sizes), the volumes it shrinks; positions point into the previous file."""
    old_clients, old_sandboxes = _entries(previous)
    clients = {str(c.id): c.stack for c in roster.clients}
    sandboxes = {(str(f.id), str(s.client)): s for f, s in roster.sandboxes()}
    errors: list[Diagnostic] = []
    notes: list[Diagnostic] = []
    for client_id, (i, stack) in old_clients.items():
        if client_id in clients and clients[client_id] != stack:
            errors.append(
                positions.diagnostic(
                    ("clients", i),
                    f"client {client_id} moves from stack group {stack or 'of its own'} to "
                    f"{clients[client_id] or 'one of its own'}: a roster change does not move a client's resources "
                    "between stacks (its namespace would be created in one and deleted in the other); keep its "
                    "stack group",
                )
            )
        if client_id not in clients:
            errors.append(
                positions.diagnostic(
                    ("clients", i),
                    f"client {client_id} was removed: deleting its namespace would delete every volume in it; "
                    "archive and release its sandboxes first, then follow docs/offboarding.md",
                )
            )
    for (freelancer_id, client_id), (i, j, state, storage) in old_sandboxes.items():
        where: PathKey = ("freelancers", i, "sandboxes", j)
        entry = sandboxes.get((freelancer_id, client_id))
        if entry is not None:
            if settings is not None:
                whose = f"{freelancer_id} for {client_id}"
                errors += _shrinks(entry, storage, positions=positions, where=where, settings=settings, whose=whose)
            continue
        if not removal_refused(state):
            notes.append(
                positions.diagnostic(
                    where,
                    f"archived sandbox of {freelancer_id} for {client_id} was removed: make sure its volumes were "
                    "released (`pulumi state unprotect`), or `pulumi up` will stop at them",
                )
            )
        else:
            errors.append(
                positions.diagnostic(
                    where, f"{state} sandbox of {freelancer_id} for {client_id} was removed: {ARCHIVE_FIRST}"
                )
            )
    return errors, notes


def _shrinks(
    entry: SandboxEntry, storage: object, *, positions: Positions, where: PathKey, settings: StackSettings, whose: str
) -> list[Diagnostic]:
    errors: list[Diagnostic] = []
    new = entry.storage.model_dump()
    for volume in ("workspace", "home"):
        before, after = volume_size(storage, volume, settings), volume_size(new, volume, settings)
        if before is not None and after is not None and after < before:
            errors.append(
                positions.diagnostic(
                    (*where, "storage", volume),
                    f"{volume} volume of {whose} would shrink from {_size(storage, volume, settings)} to "
                    f"{_size(new, volume, settings)}: {NO_SHRINK}",
                )
            )
    return errors


def _size(storage: object, volume: str, settings: StackSettings) -> str:
    """A volume's size as written in raw roster data, or the stack's default."""
    value = storage.get(volume) if isinstance(storage, dict) else None
    if value is not None:
        return str(value)
    return settings.default_workspace_size if volume == "workspace" else settings.default_home_size
