"""Adoption: move resources into the stacks that the plan says own them, without touching the cluster.

A team that ran the single-stack layout (everything in the stack ``<env>``) moves to the platform stack
and one stack per client group with ``python -m sandbox_infra adopt --env <env>``: every client's
components (``ClientTenant``, ``FreelancerSandbox``, the client's routing, monitoring and registry access,
with all their children) are moved by ``pulumi state
move`` into their slice's stack, the platform's stay. URNs keep their logical names and types, so the
program declares exactly what each stack now holds, and a preview of every stack, which the command runs
last, proves that nothing will be created, replaced or deleted. The same command, with ``--from`` naming
a client stack, moves a client whose roster ``stack`` group changed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from sandbox_infra.environment import Environment
from sandbox_infra.plan import Plan

TENANT_TYPE = "sandbox-infra:tenancy:ClientTenant"
SANDBOX_TYPE = "sandbox-infra:sandbox:FreelancerSandbox"
CLIENT_SERVICE_TYPES = (
    "sandbox-infra:mesh:ClientRouting",
    "sandbox-infra:monitoring:ClientMonitoring",
    "sandbox-infra:registry:ClientRegistryAccess",
)
"""A client's services, named ``client-<id>-<service>`` after its tenant (program.py)."""
_UUID_LENGTH = 36


class AdoptionError(RuntimeError):
    """State that cannot be moved safely (a message for a person; nothing was moved)."""


def _client_of(resource_type: str, name: str) -> str | None:
    """The client id in a top-level component's logical name (see TenantPlan / SandboxPlan.resource_name)."""
    if resource_type == TENANT_TYPE and name.startswith("client-"):
        return name.removeprefix("client-")
    if resource_type in CLIENT_SERVICE_TYPES and name.startswith("client-"):
        return name.removeprefix("client-")[:_UUID_LENGTH]
    if resource_type == SANDBOX_TYPE and name.startswith("sandbox-"):
        return name[-_UUID_LENGTH:]
    return None


def planned_moves(
    environment: Environment, plan: Plan, source: str, resources: Iterable[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Destination stack -> URNs of the top-level components to move there from ``source`` (their children
    move with them). Raises :class:`AdoptionError` for a component whose client is not in the roster."""
    owner: dict[UUID, str] = {t.client_id: environment.stack(s.id) for s in plan.slices for t in s.tenants}
    resources = list(resources)
    roots = {str(r.get("urn")) for r in resources if r.get("type") == "pulumi:pulumi:Stack"}
    moves: dict[str, list[str]] = defaultdict(list)
    strangers: list[str] = []
    for resource in resources:
        urn = str(resource.get("urn", ""))
        if resource.get("parent") not in roots:
            continue  # only top-level components; their children move with them
        client = _client_of(str(resource.get("type")), urn.rsplit("::", 1)[-1])
        if client is None:
            continue
        try:
            destination = owner.get(UUID(client))
        except ValueError:
            destination = None
        if destination is None:
            strangers.append(urn)
        elif destination != source:
            moves[destination].append(urn)
    if strangers:
        raise AdoptionError(
            f"stack {source} holds resources of clients that are not in the roster; offboard them first "
            f"(nothing was moved): {', '.join(strangers[:5])}{' …' if len(strangers) > 5 else ''}"
        )
    return dict(moves)
