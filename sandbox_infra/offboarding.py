"""What a roster change removes, compared with the previous roster (``check --previous``).

Deleting an entry is never how data goes away: every volume is ``protect``-ed, so ``pulumi up`` would
stop at the first volume it was asked to delete, and deleting a client's namespace would delete its
volumes whatever Pulumi thinks. Offboarding is therefore explicit (docs/offboarding.md):

1. set the sandbox's ``state: archived`` (compute and quota go, volumes stay) and ``pulumi up``;
2. release the volumes: ``pulumi state unprotect`` their URNs (``retain_on_delete`` keeps them in the
   cluster even after Pulumi forgets them), then remove the entry and ``pulumi up``;
3. delete or hand over the data with kubectl, outside Pulumi, once the client agrees.

This module lets a roster pull request fail early, with that explanation, when it skips step 1, and
when it moves a client to another stack group (which would create its namespace in one stack and
delete it from another).
"""

from __future__ import annotations

from sandbox_infra.roster import Roster
from sandbox_infra.source import Diagnostic, Positions

ARCHIVE_FIRST = "set `state: archived` first and update; volumes are only released deliberately (docs/offboarding.md)"


def _entries(data: object) -> tuple[dict[str, tuple[int, str | None]], dict[tuple[str, str], tuple[int, int, str]]]:
    """Client ids -> (index, stack group), and (freelancer id, client id) -> (freelancer index, sandbox
    index, state), read leniently from raw roster data (the previous roster need not be valid today)."""
    clients: dict[str, tuple[int, str | None]] = {}
    sandboxes: dict[tuple[str, str], tuple[int, int, str]] = {}
    if not isinstance(data, dict):
        return clients, sandboxes
    for i, client in enumerate(data.get("clients") or []):
        if isinstance(client, dict) and "id" in client:
            stack = client.get("stack")
            clients[str(client["id"]).lower()] = (i, str(stack) if stack is not None else None)
    for i, freelancer in enumerate(data.get("freelancers") or []):
        if not isinstance(freelancer, dict):
            continue
        for j, sandbox in enumerate(freelancer.get("sandboxes") or []):
            if isinstance(sandbox, dict) and "client" in sandbox:
                key = (str(freelancer.get("id")).lower(), str(sandbox["client"]).lower())
                sandboxes[key] = (i, j, str(sandbox.get("state", "active")))
    return clients, sandboxes


def removals(previous: object, positions: Positions, roster: Roster) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(errors, notes) for what ``roster`` drops from ``previous``; positions point into the previous file."""
    old_clients, old_sandboxes = _entries(previous)
    clients = {str(c.id): c.stack for c in roster.clients}
    sandboxes = {(str(f.id), str(s.client)) for f, s in roster.sandboxes()}
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
    for (freelancer_id, client_id), (i, j, state) in old_sandboxes.items():
        if (freelancer_id, client_id) in sandboxes:
            continue
        where = ("freelancers", i, "sandboxes", j)
        if state == "archived":
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
