"""The plan: everything the program declares, computed once from a validated roster and the stack settings.

It is plain frozen data made by pure functions, so it is what the components render, what the
orchestrator compares between two rosters to find the stacks a change touches, and what the unit tests
read, without Pulumi. Components receive their part of the plan and compute nothing.

One program serves several stacks (*slices*): the ``platform`` slice (the CRD and the platform namespace)
and one slice per group of clients. A client's group is ``client-<id>`` unless the roster names one
(``clients[].stack``), which is how thousands of tiny clients share a few stacks instead of each paying
a stack's fixed cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from sandbox_infra import naming, observability, routing
from sandbox_infra.charts import (
    GATEWAY_NAMESPACE,
    HARBOR_NAMESPACE,
    ISTIO_NAMESPACE,
    MONITORING_NAMESPACE,
    RELEASE_GROUPS,
    ReleasePlan,
    release_plans,
)
from sandbox_infra.database_plan import DatabasePlan, plan_database
from sandbox_infra.observability import ClientAlertsPlan
from sandbox_infra.quantity import format_bytes, format_cpu, parse_quantity
from sandbox_infra.roster import Freelancer, Roster, SandboxEntry, SandboxState
from sandbox_infra.routing import ClientMeshPlan, ObjectPlan
from sandbox_infra.service_namespaces import NamespacePlan, platform_namespaces
from sandbox_infra.settings import StackSettings
from sandbox_infra.tiers import GPU_RESOURCE, TIERS, ZERO, ContainerResources, Resources, Tier, split_budget

PLATFORM_SLICE = "platform"
"""The slice of the shared, cluster-wide pieces; its stack is named after the environment alone."""
ALL_SLICES = "all"
"""The single-stack layout (the platform and every client in one stack), which ``adopt`` splits."""


class ApiKeySource(StrEnum):
    """Which secret setting a client's Gemini API key comes from."""

    CLIENT = "client"
    """``clientGeminiApiKeys.<client-id>``: the client's own key."""
    DEFAULT = "default"
    """``geminiApiKey``: the platform's default key."""


@dataclass(frozen=True)
class VolumePlan:
    """One PersistentVolumeClaim of a sandbox."""

    name: str
    size: str
    storage_class: str


@dataclass(frozen=True)
class SandboxPlan:
    """One freelancer's sandbox for one client, as it will be declared."""

    freelancer_id: UUID
    client_id: UUID
    tier: Tier
    state: SandboxState
    resources: ContainerResources
    """The pod budget, split between its containers."""
    gpu: bool
    gemini_cli_image: str
    """Full, pinned reference of the gemini-cli image (the per-user image when the roster names a tag)."""
    custom_image_tag: str | None
    code_server_image: str
    workspace: VolumePlan
    home: VolumePlan

    @property
    def name(self) -> str:
        """StatefulSet, Service and Sandbox object name."""
        return naming.sandbox(self.freelancer_id)

    @property
    def resource_name(self) -> str:
        """Pulumi logical name of the component (part of every child's URN: never change it)."""
        return f"sandbox-{self.freelancer_id}-{self.client_id}"


@dataclass(frozen=True)
class QuotaBudget:
    """What a client's namespace may hold: the sum over its sandboxes, plus room for one more pod."""

    compute: Resources
    """Sum of the pod budgets of its active and suspended sandboxes."""
    pvcs: int
    """Sum of the tiers' PersistentVolumeClaim allowances (archived sandboxes keep their volumes)."""
    storage: Decimal
    """Sum of the requested volume sizes, in bytes."""
    headroom: Resources = ZERO
    """The largest pod budget of any of its sandboxes, archived ones included, resource by resource, added
    to the compute quota: room for one pod the sum does not count, while it exists.

    - An update that archives a sandbox and adds another: the engine deletes what the roster no longer
      declares (the archived sandbox's StatefulSet) only after every create, so the new sandbox's pod must
      be admitted while the archived one's still runs; with a quota of exactly the new sum, it is refused
      "exceeded quota" and the update waits on it until the engine gives up (found by the crash soak).
    - Under load the API server can charge a pod's create twice (the StatefulSet controller's create times
      out on its side but succeeds, its retry is refused "already exists" after quota admission charged
      it again) and keeps the charge until the quota controller recounts (docs/reliability.md, "Load").

    One pod's worth covers one such pod per namespace at a time. Nothing but the platform creates pods in
    a client namespace (sandboxes have no API token), so the room is not anyone's to use."""

    def hard(self) -> dict[str, str]:
        """The ResourceQuota ``spec.hard``. Extended resources only have a requests form."""
        compute = self.compute + self.headroom
        return {
            "requests.cpu": format_cpu(compute.requests_cpu),
            "requests.memory": format_bytes(compute.requests_memory),
            "limits.cpu": format_cpu(compute.limits_cpu),
            "limits.memory": format_bytes(compute.limits_memory),
            f"requests.{GPU_RESOURCE}": str(compute.gpu),
            "persistentvolumeclaims": str(self.pvcs),
            "requests.storage": format_bytes(self.storage) if self.storage else "0",
        }


@dataclass(frozen=True)
class PullSecretPlan:
    """A ``kubernetes.io/dockerconfigjson`` Secret for the platform's Harbor (the token is a Pulumi secret)."""

    name: str
    registry_host: str
    username: str


@dataclass(frozen=True)
class DashboardPlan:
    """One Grafana dashboard, as the JSON the sidecar loads from a ConfigMap."""

    name: str
    namespace: str
    json: str


@dataclass(frozen=True)
class ServicePlan:
    """One platform service (the mesh, monitoring, the registry): namespaces, releases, custom objects."""

    name: str
    namespaces: tuple[NamespacePlan, ...]
    releases: tuple[ReleasePlan, ...]
    """Its releases switched on, in install order."""
    objects: tuple[ObjectPlan, ...]
    dashboards: tuple[DashboardPlan, ...] = ()


@dataclass(frozen=True)
class ServicesPlan:
    """The platform's third-party services, and the releases the ``releases`` setting switched off."""

    mesh: ServicePlan
    monitoring: ServicePlan
    registry: ServicePlan
    releases_off: tuple[str, ...]

    def all(self) -> tuple[ServicePlan, ...]:
        return (self.mesh, self.monitoring, self.registry)


@dataclass(frozen=True)
class TenantPlan:
    """One client's namespace and what bounds and isolates it, with its sandboxes."""

    client_id: UUID
    client_name: str
    quota: QuotaBudget
    api_key: ApiKeySource | None
    """None when the client has no sandbox (no Secret is declared)."""
    platform_namespace: str
    controller_service_account: str
    pod_security_version: str
    egress_denied_cidrs: tuple[str, ...]
    max_volume_size: str
    sandboxes: tuple[SandboxPlan, ...]
    mesh: ClientMeshPlan | None = None
    """Its Istio objects: mTLS, who may reach code-server, a route per active sandbox (see routing.py)."""
    alerts: ClientAlertsPlan | None = None
    """Its PrometheusRule (:mod:`sandbox_infra.observability`)."""
    mesh_labels: tuple[tuple[str, str], ...] = tuple(routing.AMBIENT_LABELS.items())
    """Namespace labels that put its pods in Istio's ambient mesh."""
    pull_secret: PullSecretPlan | None = None
    """The registry credentials its sandbox pods pull with; None when the stack has no pull token."""

    @property
    def namespace(self) -> str:
        return naming.namespace(self.client_id)

    @property
    def resource_name(self) -> str:
        """Pulumi logical name of the component (part of every child's URN: never change it)."""
        return f"client-{self.client_id}"


@dataclass(frozen=True)
class PlatformPlan:
    """The cluster-wide pieces every tenant relies on."""

    namespace: str
    pod_security_version: str
    database: DatabasePlan | None = None
    """The platform database and the roster's records in it; None when the environment has none."""
    services: ServicesPlan | None = None


@dataclass(frozen=True)
class SlicePlan:
    """What one client stack declares: a group of clients with their sandboxes."""

    id: str
    """``client-<id>`` or the roster's ``clients[].stack``; the stack is ``<environment>-<id>``."""
    tenants: tuple[TenantPlan, ...]

    def sandboxes(self) -> Iterator[SandboxPlan]:
        for tenant in self.tenants:
            yield from tenant.sandboxes


@dataclass(frozen=True)
class Plan:
    """The whole desired state: the platform slice and every client slice, ordered by id."""

    platform: PlatformPlan
    slices: tuple[SlicePlan, ...]

    def slice(self, slice_id: str) -> SlicePlan | None:
        return next((s for s in self.slices if s.id == slice_id), None)

    def tenants(self) -> Iterator[TenantPlan]:
        for group in self.slices:
            yield from group.tenants


def stack_name(environment: str, slice_id: str) -> str:
    """The Pulumi stack of a slice: the environment's own name for the platform, ``<env>-<slice>`` else."""
    return environment if slice_id == PLATFORM_SLICE else f"{environment}-{slice_id}"


def slice_of(client_id: UUID, stack: str | None) -> str:
    """The slice a client belongs to: the roster's ``stack`` value, else a slice of its own."""
    return stack or f"client-{client_id}"


def sandbox_budget(entry: SandboxEntry) -> Resources:
    """The pod budget of a validated sandbox entry: its tier's, or the custom numbers, plus any GPU."""
    spec = TIERS[entry.tier]
    gpus = 1 if entry.gpu else 0
    if spec.budget is not None:
        b = spec.budget
        return Resources(b.requests_cpu, b.requests_memory, b.limits_cpu, b.limits_memory, gpus)
    assert entry.resources is not None  # guaranteed by validation
    r = entry.resources
    return Resources(
        parse_quantity(r.requests.cpu),
        parse_quantity(r.requests.memory),
        parse_quantity(r.limits.cpu),
        parse_quantity(r.limits.memory),
        r.gpu or gpus,
    )


def gemini_image(freelancer_id: UUID, tag: str | None, settings: StackSettings) -> str:
    """The per-user image when the roster names a tag (images committed per user), else the base image."""
    if tag:
        return f"{settings.user_image_prefix}{freelancer_id}:{tag}"
    return f"{settings.gemini_cli_image}:{settings.gemini_cli_tag}"


def plan_sandbox(freelancer: Freelancer, entry: SandboxEntry, settings: StackSettings) -> SandboxPlan:
    fid = freelancer.id
    return SandboxPlan(
        freelancer_id=fid,
        client_id=entry.client,
        tier=entry.tier,
        state=entry.state,
        resources=split_budget(sandbox_budget(entry)),
        gpu=entry.gpu,
        gemini_cli_image=gemini_image(fid, entry.image, settings),
        custom_image_tag=entry.image,
        code_server_image=settings.code_server_image,
        workspace=VolumePlan(
            naming.workspace_pvc(fid),
            entry.storage.workspace or settings.default_workspace_size,
            settings.workspace_storage_class,
        ),
        home=VolumePlan(
            naming.home_pvc(fid), entry.storage.home or settings.default_home_size, settings.home_storage_class
        ),
    )


def quota(sandboxes: tuple[SandboxPlan, ...]) -> QuotaBudget:
    """A namespace's quota: the sum of its sandboxes' budgets, volume allowances and sizes, and the largest
    budget of any of them again as headroom (see :attr:`QuotaBudget.headroom`).

    Suspended sandboxes keep their compute reservation (resuming must never fail on quota); archived
    ones keep only their volumes.
    """
    compute, headroom, pvcs, storage = ZERO, ZERO, 0, Decimal(0)
    for sandbox in sandboxes:
        if sandbox.state is not SandboxState.ARCHIVED:
            compute += sandbox.resources.pod
        headroom = headroom.largest(sandbox.resources.pod)
        pvcs += TIERS[sandbox.tier].pvcs
        storage += parse_quantity(sandbox.workspace.size) + parse_quantity(sandbox.home.size)
    return QuotaBudget(compute=compute, pvcs=pvcs, storage=storage, headroom=headroom)


def _api_key(client_id: UUID, has_sandboxes: bool, settings: StackSettings) -> ApiKeySource | None:
    if not has_sandboxes:
        return None
    if str(client_id) in settings.client_api_keys_present:
        return ApiKeySource.CLIENT
    return ApiKeySource.DEFAULT if settings.api_key_present else None


def services_plan(settings: StackSettings) -> ServicesPlan:
    """The platform's services: every namespace and custom object, and the releases switched on."""
    releases = release_plans(
        settings,
        alloy_config=observability.alloy_config(),
        ksm_custom_resources=observability.kube_state_metrics_custom_resources(),
    )
    namespaces = {n.name: n for n in platform_namespaces(settings)}

    def part(name: str, spaces: tuple[str, ...], objects: tuple[ObjectPlan, ...], **extra: Any) -> ServicePlan:
        return ServicePlan(
            name,
            tuple(namespaces[n] for n in spaces),
            tuple(r for r in releases if r.namespace in spaces),
            objects,
            **extra,
        )

    monitor = ObjectPlan(
        routing.API_VERSION_MONITORING,
        "ServiceMonitor",
        "platform-api",
        settings.platform_namespace,
        observability.platform_api_monitor(),
    )
    dashboards = tuple(
        DashboardPlan(name, MONITORING_NAMESPACE, text) for name, text in sorted(observability.dashboards().items())
    )
    return ServicesPlan(
        mesh=part(
            "mesh",
            (ISTIO_NAMESPACE, GATEWAY_NAMESPACE),
            (
                routing.gateway(sandbox_host=settings.sandbox_host, registry_host=settings.registry_host),
                routing.mesh_tracing(ISTIO_NAMESPACE),
            ),
        ),
        monitoring=part("monitoring", (MONITORING_NAMESPACE,), (monitor,), dashboards=dashboards),
        registry=part("registry", (HARBOR_NAMESPACE,), (routing.registry_route(settings.registry_host),)),
        releases_off=tuple(r for r in RELEASE_GROUPS if r not in settings.releases),
    )


def build_plan(roster: Roster, settings: StackSettings) -> Plan:
    """The desired state of every slice. ``roster`` must be valid (``load_roster`` checked it)."""
    by_client: dict[UUID, list[SandboxPlan]] = defaultdict(list)
    for freelancer in roster.freelancers:
        for entry in freelancer.sandboxes:
            by_client[entry.client].append(plan_sandbox(freelancer, entry, settings))
    groups: dict[str, list[TenantPlan]] = {}
    pull_secret = (
        PullSecretPlan(naming.PULL_SECRET, settings.registry_host, settings.registry_pull_user)
        if settings.registry_pull_token_present
        else None
    )
    # Canonical order (by id, not by position in the file), so reordering the roster changes no plan. A UUID's
    # number sorts as its text does (fixed-width lowercase hex), without formatting 20,000 ids as text.
    for client in sorted(roster.clients, key=lambda c: c.id.int):
        sandboxes = tuple(sorted(by_client[client.id], key=lambda s: s.freelancer_id.int))
        tenant = TenantPlan(
            client_id=client.id,
            client_name=client.name,
            quota=quota(sandboxes),
            api_key=_api_key(client.id, bool(sandboxes), settings),
            platform_namespace=settings.platform_namespace,
            controller_service_account=settings.controller_service_account,
            pod_security_version=settings.pod_security_version,
            egress_denied_cidrs=settings.egress_denied_cidrs,
            max_volume_size=settings.max_storage,
            sandboxes=sandboxes,
            mesh=ClientMeshPlan(
                client.id,
                naming.namespace(client.id),
                settings.sandbox_host,
                settings.platform_namespace,
                tuple(s.freelancer_id for s in sandboxes if s.state is SandboxState.ACTIVE),
            ),
            alerts=ClientAlertsPlan(client.id, naming.namespace(client.id)),
            pull_secret=pull_secret,
        )
        groups.setdefault(slice_of(client.id, client.stack), []).append(tenant)
    return Plan(
        platform=PlatformPlan(
            namespace=settings.platform_namespace,
            pod_security_version=settings.pod_security_version,
            database=plan_database(roster, settings, (t for tenants in groups.values() for t in tenants)),
            services=services_plan(settings),
        ),
        slices=tuple(SlicePlan(slice_id, tuple(tenants)) for slice_id, tenants in sorted(groups.items())),
    )
