"""The change report of a roster pull request: who gets what, at what cost, with what risk to data.

A reviewer of a roster change should not have to read a Pulumi diff of hundreds of Kubernetes objects.
This compares the plans of the base and the new roster (:mod:`sandbox_infra.plan`; the base comes from
:func:`sandbox_infra.changes.load_base`) and says, most important first: what is refused (the rules of
``check --previous``: a sandbox dropped without being archived, a client removed or moved to another
stack group, a volume shrunk), what puts data at risk (volumes released from Pulumi's protection,
sandboxes archived, namespaces that would go), each freelancer's change (added, removed, archived,
suspended, resumed, tier, GPU, volume sizes, image), each client's quota before and after, the whole
cluster's reservations against the capacity the stack declares (``clusterCapacity``), the estimated
monthly cost from the stack's price table (``prices``), the stacks that will run, and, given the JSON
summary of ``preview --json``, each stack's preview and every policy violation.

It renders as markdown (the pull request comment) or JSON (``report.schema.json`` describes it); see
docs/pull-requests.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from sandbox_infra import naming
from sandbox_infra.changes import Base, touched
from sandbox_infra.environment import Environment
from sandbox_infra.offboarding import NO_SHRINK, removal_refused, removals
from sandbox_infra.plan import Plan, QuotaBudget, SandboxPlan, TenantPlan
from sandbox_infra.quantity import format_bytes, format_cpu, parse_quantity
from sandbox_infra.roster import SandboxState
from sandbox_infra.settings import ClusterCapacity, Prices
from sandbox_infra.source import InputError
from sandbox_infra.tiers import Tier

SCHEMA_VERSION = 1
GIB = Decimal(2) ** 30
CENT = Decimal("0.01")
PREVIEW_COLUMNS = ("create", "update", "replace", "delete", "same")


class ReportError(ValueError):
    """An input the report cannot use (a base that is not a valid roster today, a malformed preview file)."""


class ChangeKind(StrEnum):
    """What happened to one sandbox (a freelancer's place at one client), in order of importance."""

    REMOVED = "removed"
    ARCHIVED = "archived"
    ADDED = "added"
    RESTORED = "restored"
    """Archived before, active or suspended now."""
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    CHANGED = "changed"
    """Same state; tier, GPU, resources, volume size or image changed."""


_KIND_ORDER = {kind: i for i, kind in enumerate(ChangeKind)}


@dataclass(frozen=True)
class Amounts:
    """What quotas reserve: requested CPU (cores) and memory (bytes), GPUs, volume storage (bytes)."""

    cpu: Decimal = Decimal(0)
    memory: Decimal = Decimal(0)
    gpu: int = 0
    storage: Decimal = Decimal(0)

    @classmethod
    def of_quota(cls, quota: QuotaBudget) -> Amounts:
        compute = quota.compute
        return cls(compute.requests_cpu, compute.requests_memory, compute.gpu, quota.storage)

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.cpu + other.cpu, self.memory + other.memory, self.gpu + other.gpu, self.storage + other.storage
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu": format_cpu(self.cpu),
            "memory": _bytes(self.memory),
            "gpu": self.gpu,
            "storage": _bytes(self.storage),
        }


@dataclass(frozen=True)
class SandboxChange:
    """One row of the freelancer table."""

    kind: ChangeKind
    freelancer_id: UUID
    freelancer: str
    """The freelancer's email (what a reviewer recognizes)."""
    client_id: UUID
    client: str
    details: tuple[str, ...]
    refused: str | None = None
    """Why this change cannot be applied, if it cannot."""
    monthly_cost: Decimal | None = None
    """Estimated change of the monthly cost (None without a price table)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "freelancerId": str(self.freelancer_id),
            "freelancer": self.freelancer,
            "clientId": str(self.client_id),
            "client": self.client,
            "details": list(self.details),
            "refused": self.refused,
            "monthlyCostDelta": _money(self.monthly_cost),
        }


@dataclass(frozen=True)
class QuotaChange:
    """One client's namespace quota, before and after (None: the client is not in that roster)."""

    client_id: UUID
    client: str
    stack: str
    before: Amounts | None
    after: Amounts | None

    def to_json(self) -> dict[str, Any]:
        return {
            "clientId": str(self.client_id),
            "client": self.client,
            "stack": self.stack,
            "before": self.before.to_json() if self.before else None,
            "after": self.after.to_json() if self.after else None,
        }


@dataclass(frozen=True)
class ClusterFit:
    """The whole cluster's reservations (the sum of every quota) against the declared capacity."""

    before: Amounts
    after: Amounts
    capacity: ClusterCapacity | None

    @property
    def over(self) -> tuple[str, ...]:
        """The dimensions whose reservations would exceed the capacity."""
        if self.capacity is None:
            return ()
        return tuple(
            name
            for name in ("cpu", "memory", "gpu", "storage")
            if (limit := getattr(self.capacity, name)) is not None and getattr(self.after, name) > limit
        )

    def to_json(self) -> dict[str, Any]:
        capacity = None
        if self.capacity is not None:
            c = self.capacity
            capacity = {
                "cpu": format_cpu(c.cpu) if c.cpu is not None else None,
                "memory": _bytes(c.memory) if c.memory is not None else None,
                "gpu": c.gpu,
                "storage": _bytes(c.storage) if c.storage is not None else None,
            }
        return {
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "capacity": capacity,
            "fits": None if capacity is None else not self.over,
            "over": list(self.over),
        }


@dataclass(frozen=True)
class Cost:
    """Estimated monthly cost of everything the roster declares, before and after."""

    currency: str
    before: Decimal
    after: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "before": _money(self.before),
            "after": _money(self.after),
            "delta": _money(self.after - self.before),
        }


@dataclass(frozen=True)
class VolumeRisk:
    """A volume whose protection the change lifts (its sandbox leaves the roster), or that would shrink."""

    namespace: str
    name: str
    size: str
    freelancer: str
    client: str
    why: str
    refused: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "size": self.size,
            "freelancer": self.freelancer,
            "client": self.client,
            "why": self.why,
            "refused": self.refused,
        }


@dataclass(frozen=True)
class NamespaceRisk:
    """A client namespace the change would delete (with every volume in it)."""

    namespace: str
    client: str
    volumes: int
    why: str
    refused: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "client": self.client,
            "volumes": self.volumes,
            "why": self.why,
            "refused": self.refused,
        }


@dataclass(frozen=True)
class StackPreview:
    """One stack's part of ``preview --json``."""

    stack: str
    status: str
    changes: Mapping[str, int]
    policy_violations: tuple[str, ...]
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "status": self.status,
            "changes": dict(self.changes),
            "policyViolations": list(self.policy_violations),
            "error": self.error,
        }


@dataclass(frozen=True)
class Preview:
    """The summary ``python -m sandbox_infra preview --json`` printed."""

    stacks: tuple[StackPreview, ...]
    not_run: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(s.status == "ok" and not s.policy_violations for s in self.stacks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "stacks": [s.to_json() for s in self.stacks], "notRun": list(self.not_run)}


@dataclass(frozen=True)
class ChangeReport:
    """Everything the report says; :func:`to_markdown` and :meth:`to_json` render it."""

    environment: str
    base: str
    errors: tuple[str, ...] = ()
    """The new roster's validation errors (then nothing else is computed)."""
    refused: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    freelancers_added: tuple[str, ...] = ()
    freelancers_removed: tuple[str, ...] = ()
    changes: tuple[SandboxChange, ...] = ()
    quotas: tuple[QuotaChange, ...] = ()
    cluster: ClusterFit | None = None
    cost: Cost | None = None
    volumes: tuple[VolumeRisk, ...] = ()
    namespaces: tuple[NamespaceRisk, ...] = ()
    stacks: tuple[tuple[str, str], ...] = ()
    """(stack, why it runs) for every stack the change touches."""
    stacks_total: int = 0
    stacks_not_run: tuple[str, ...] = ()
    """Stacks whose clients all left the roster: never run, offboarded by hand."""
    preview: Preview | None = None

    @property
    def verdict(self) -> str:
        if self.errors:
            return "invalid"
        if self.refused:
            return "refused"
        if self.preview is not None and not self.preview.ok:
            return "preview-failed"
        return "ok"

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def archived(self) -> tuple[SandboxChange, ...]:
        return tuple(c for c in self.changes if c.kind is ChangeKind.ARCHIVED)

    def counts(self) -> dict[str, int]:
        counts = {kind.value: 0 for kind in ChangeKind}
        for change in self.changes:
            counts[change.kind.value] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "environment": self.environment,
            "base": self.base,
            "verdict": self.verdict,
            "ok": self.ok,
            "errors": list(self.errors),
            "refused": list(self.refused),
            "notes": list(self.notes),
            "freelancers": {"added": list(self.freelancers_added), "removed": list(self.freelancers_removed)},
            "counts": self.counts(),
            "changes": [c.to_json() for c in self.changes],
            "quotas": [q.to_json() for q in self.quotas],
            "cluster": self.cluster.to_json() if self.cluster else None,
            "cost": self.cost.to_json() if self.cost else None,
            "dataRisk": {
                "volumesReleased": [v.to_json() for v in self.volumes if not v.why.startswith("shrink")],
                "volumesShrunk": [v.to_json() for v in self.volumes if v.why.startswith("shrink")],
                "sandboxesArchived": [c.to_json() for c in self.archived],
                "namespacesDeleted": [n.to_json() for n in self.namespaces],
            },
            "stacks": {
                "touched": [{"stack": s, "reason": why} for s, why in self.stacks],
                "total": self.stacks_total,
                "notRun": list(self.stacks_not_run),
            },
            "preview": self.preview.to_json() if self.preview else None,
        }


# ---- building the report -------------------------------------------------------------------------------


def build_report(environment: Environment, base: Base, *, preview: Preview | None = None) -> ChangeReport:
    """The report of the environment's roster against ``base``; raises :class:`ReportError` for a base
    that is not a valid roster today (there is nothing to compare with)."""
    try:
        roster = environment.load_roster()
    except InputError as exc:
        return ChangeReport(environment.name, base.name, errors=tuple(str(d) for d in exc.diagnostics), preview=preview)
    head = environment.plan(roster)
    old = base_plan(environment, base, head)
    errors, notes = removals(base.data, base.positions, roster, environment.settings)
    before, after = _base_emails(base.data), {f.id: f.email for f in roster.freelancers}
    emails = {**before, **after}
    change = touched(old, head, everything=base.everything)
    return ChangeReport(
        environment=environment.name,
        base=base.name,
        refused=tuple(str(d) for d in errors),
        notes=tuple(
            [str(d) for d in notes]
            + ([f"every stack runs: {base.everything}"] if base.everything and old.slices else [])
        ),
        freelancers_added=tuple(sorted(email for fid, email in after.items() if fid not in before)),
        freelancers_removed=tuple(sorted(email for fid, email in before.items() if fid not in after)),
        changes=_sandbox_changes(old, head, emails, environment.settings.prices),
        quotas=_quota_changes(environment, old, head),
        cluster=ClusterFit(_total(old), _total(head), environment.settings.cluster_capacity),
        cost=_cost(old, head, environment.settings.prices),
        volumes=_volume_risks(old, head, emails),
        namespaces=_namespace_risks(environment, old, head),
        stacks=tuple((environment.stack(s), why) for s, why in change.slices.items()),
        stacks_total=1 + len(head.slices),
        stacks_not_run=tuple(environment.stack(s) for s in change.removed),
        preview=preview,
    )


def base_plan(environment: Environment, base: Base, head: Plan) -> Plan:
    """The base's plan: an empty one when the base has no roster yet (the first roster of a project)."""
    if base.plan is not None:
        return base.plan
    if base.data == {}:  # load_base's value for a revision without the roster file
        return Plan(platform=head.platform, slices=())
    try:
        environment.validate(base.data, base.positions)
    except InputError as exc:
        shown = "; ".join(str(d) for d in exc.diagnostics[:3])
        more = f" (and {len(exc.diagnostics) - 3} more)" if len(exc.diagnostics) > 3 else ""
        raise ReportError(
            f"--base {base.name} is not a valid roster under today's rules, so there is nothing to compare "
            f"with: {shown}{more}"
        ) from exc
    raise ReportError(f"--base {base.name}: no plan")  # pragma: no cover - load_base plans every valid roster


def _base_emails(data: object) -> dict[UUID, str]:
    """Freelancer id -> email, read leniently from the base's raw roster data."""
    emails: dict[UUID, str] = {}
    freelancers = data.get("freelancers") if isinstance(data, dict) else None
    for item in freelancers if isinstance(freelancers, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            emails[UUID(str(item.get("id")))] = str(item.get("email", item.get("id")))
        except ValueError:
            continue
    return emails


def _sandboxes(plan: Plan) -> dict[tuple[UUID, UUID], tuple[SandboxPlan, TenantPlan]]:
    return {(s.freelancer_id, t.client_id): (s, t) for t in plan.tenants() for s in t.sandboxes}


def _budget(sandbox: SandboxPlan) -> str:
    pod = sandbox.resources.pod
    gpu = f" · {pod.gpu} GPU" if pod.gpu else ""
    return f"{format_cpu(pod.requests_cpu)} CPU · {_bytes(pod.requests_memory)}{gpu}"


def _describe_new(sandbox: SandboxPlan) -> tuple[str, ...]:
    details = [f"{sandbox.tier.value} ({_budget(sandbox)})"]
    if sandbox.state is not SandboxState.ACTIVE:
        details.append(f"state {sandbox.state.value}")
    details.append(f"workspace {sandbox.workspace.size} · home {sandbox.home.size}")
    if sandbox.custom_image_tag:
        details.append(f"image {sandbox.custom_image_tag}")
    return tuple(details)


def _describe_change(old: SandboxPlan, new: SandboxPlan) -> tuple[list[str], str | None]:
    """What changed besides the state, and why it is refused (a shrink), if it is."""
    details: list[str] = []
    refused: str | None = None
    if old.tier != new.tier:
        details.append(f"tier {old.tier.value} → {new.tier.value} ({_budget(old)} → {_budget(new)})")
    elif old.resources != new.resources and (new.tier is Tier.CUSTOM or old.gpu == new.gpu):
        details.append(f"resources {_budget(old)} → {_budget(new)}")
    if old.gpu != new.gpu:
        details.append("GPU added" if new.gpu else "GPU removed")
    for volume in ("workspace", "home"):
        before, after = getattr(old, volume).size, getattr(new, volume).size
        if parse_quantity(before) != parse_quantity(after):
            shrinks = parse_quantity(after) < parse_quantity(before)
            details.append(f"{volume} {before} → {after}{' (shrink)' if shrinks else ''}")
            if shrinks:
                refused = f"{volume} volume would shrink from {before} to {after}: {NO_SHRINK}"
    if old.gemini_cli_image != new.gemini_cli_image:
        details.append(f"image {old.custom_image_tag or 'base'} → {new.custom_image_tag or 'base'}")
    return details, refused


_TRANSITIONS = {
    (SandboxState.ACTIVE, SandboxState.SUSPENDED): ChangeKind.SUSPENDED,
    (SandboxState.SUSPENDED, SandboxState.ACTIVE): ChangeKind.RESUMED,
    (SandboxState.ACTIVE, SandboxState.ARCHIVED): ChangeKind.ARCHIVED,
    (SandboxState.SUSPENDED, SandboxState.ARCHIVED): ChangeKind.ARCHIVED,
    (SandboxState.ARCHIVED, SandboxState.ACTIVE): ChangeKind.RESTORED,
    (SandboxState.ARCHIVED, SandboxState.SUSPENDED): ChangeKind.RESTORED,
}
_STATE_NOTES = {
    ChangeKind.SUSPENDED: "compute scaled to zero; volumes and quota kept",
    ChangeKind.RESUMED: "compute back",
    ChangeKind.ARCHIVED: "compute and quota removed; volumes kept",
    ChangeKind.RESTORED: "compute and quota back on the kept volumes",
}


def monthly_cost(sandbox: SandboxPlan, prices: Prices) -> Decimal:
    """A sandbox's estimated monthly cost: what it requests while active, and its volumes in every state."""
    storage = (parse_quantity(sandbox.workspace.size) + parse_quantity(sandbox.home.size)) / GIB
    cost = storage * prices.storage_gib_month
    if sandbox.state is SandboxState.ACTIVE:
        pod = sandbox.resources.pod
        cost += pod.requests_cpu * prices.cpu_core_month + pod.requests_memory / GIB * prices.memory_gib_month
        cost += pod.gpu * prices.gpu_month
    return cost


def _what_changed(s_old: SandboxPlan | None, s_new: SandboxPlan | None) -> tuple[ChangeKind, list[str], str | None]:
    """(kind, details, why it is refused) of one sandbox between two plans; no details: nothing to show."""
    if s_old is None:
        assert s_new is not None
        return ChangeKind.ADDED, list(_describe_new(s_new)), None
    if s_new is None:
        state = s_old.state.value
        released = (
            f"volumes leave Pulumi, kept in the cluster: workspace {s_old.workspace.size}, home {s_old.home.size}"
        )
        refused = f"{state} sandbox removed without being archived first" if removal_refused(state) else None
        return ChangeKind.REMOVED, [released], refused
    if s_old == s_new:
        return ChangeKind.CHANGED, [], None
    details, refused = _describe_change(s_old, s_new)
    kind = _TRANSITIONS.get((s_old.state, s_new.state), ChangeKind.CHANGED)
    # No details at all: only something every sandbox shares changed (a setting), not this roster entry.
    return kind, ([_STATE_NOTES[kind], *details] if kind in _STATE_NOTES else details), refused


def _sandbox_changes(
    old: Plan, new: Plan, emails: Mapping[UUID, str], prices: Prices | None
) -> tuple[SandboxChange, ...]:
    before, after = _sandboxes(old), _sandboxes(new)

    def cost(sandbox: SandboxPlan | None) -> Decimal:
        return monthly_cost(sandbox, prices) if sandbox is not None and prices is not None else Decimal(0)

    rows: list[SandboxChange] = []
    for freelancer_id, client_id in dict.fromkeys([*before, *after]):
        s_old, t_old = before.get((freelancer_id, client_id), (None, None))
        s_new, t_new = after.get((freelancer_id, client_id), (None, None))
        kind, details, refused = _what_changed(s_old, s_new)
        tenant = t_new or t_old
        if details and tenant is not None:
            rows.append(
                SandboxChange(
                    kind=kind,
                    freelancer_id=freelancer_id,
                    freelancer=emails.get(freelancer_id, str(freelancer_id)),
                    client_id=client_id,
                    client=tenant.client_name,
                    details=tuple(details),
                    refused=refused,
                    monthly_cost=cost(s_new) - cost(s_old) if prices is not None else None,
                )
            )
    rows.sort(key=lambda c: (c.refused is None, _KIND_ORDER[c.kind], c.client, c.freelancer))
    return tuple(rows)


def _slices(plan: Plan) -> dict[UUID, tuple[str, TenantPlan]]:
    return {t.client_id: (group.id, t) for group in plan.slices for t in group.tenants}


def _quota_changes(environment: Environment, old: Plan, new: Plan) -> tuple[QuotaChange, ...]:
    before, after = _slices(old), _slices(new)
    rows: list[QuotaChange] = []
    for client_id in dict.fromkeys([*before, *after]):
        b, a = before.get(client_id), after.get(client_id)
        q_old = Amounts.of_quota(b[1].quota) if b else None
        q_new = Amounts.of_quota(a[1].quota) if a else None
        pair = a or b
        if q_old == q_new or pair is None:
            continue
        slice_id, tenant = pair
        rows.append(QuotaChange(client_id, tenant.client_name, environment.stack(slice_id), q_old, q_new))
    rows.sort(key=lambda q: q.client)
    return tuple(rows)


def _total(plan: Plan) -> Amounts:
    total = Amounts()
    for tenant in plan.tenants():
        total += Amounts.of_quota(tenant.quota)
    return total


def _cost(old: Plan, new: Plan, prices: Prices | None) -> Cost | None:
    if prices is None:
        return None

    def total(plan: Plan) -> Decimal:
        return sum((monthly_cost(s, prices) for t in plan.tenants() for s in t.sandboxes), Decimal(0))

    return Cost(prices.currency, total(old), total(new))


def _volume_risks(old: Plan, new: Plan, emails: Mapping[UUID, str]) -> tuple[VolumeRisk, ...]:
    before, after = _sandboxes(old), _sandboxes(new)
    risks: list[VolumeRisk] = []
    for key, (s_old, tenant) in before.items():
        s_new = after.get(key, (None, None))[0]
        who = emails.get(key[0], str(key[0]))
        for volume in (s_old.workspace, s_old.home):
            if s_new is None:
                refused = removal_refused(s_old.state.value)
                why = f"sandbox removed ({s_old.state.value}): Pulumi forgets the volume, the cluster keeps it"
                risks.append(
                    VolumeRisk(tenant.namespace, volume.name, volume.size, who, tenant.client_name, why, refused)
                )
                continue
            kept = s_new.workspace if volume.name == s_new.workspace.name else s_new.home
            if parse_quantity(kept.size) < parse_quantity(volume.size):
                why = f"shrink from {volume.size} to {kept.size}: Kubernetes refuses it"
                risks.append(VolumeRisk(tenant.namespace, volume.name, volume.size, who, tenant.client_name, why, True))
    risks.sort(key=lambda v: (not v.refused, v.client, v.freelancer, v.name))
    return tuple(risks)


def _namespace_risks(environment: Environment, old: Plan, new: Plan) -> tuple[NamespaceRisk, ...]:
    before, after = _slices(old), _slices(new)
    risks: list[NamespaceRisk] = []
    for client_id, (slice_id, tenant) in before.items():
        volumes = 2 * len(tenant.sandboxes)
        if client_id not in after:
            why = "client removed from the roster"
        elif after[client_id][0] != slice_id:
            why = f"client moved from stack {environment.stack(slice_id)} to {environment.stack(after[client_id][0])}"
        else:
            continue
        risks.append(NamespaceRisk(naming.namespace(client_id), tenant.client_name, volumes, why, refused=True))
    return tuple(risks)


# ---- the preview's summary -------------------------------------------------------------------------------


def load_preview(path: Path) -> Preview:
    """The JSON summary ``python -m sandbox_infra preview --json`` printed; :class:`ReportError` if it is not one."""
    what = f"{path}: not the JSON summary of `python -m sandbox_infra preview --json`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the preview summary: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{what} ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("stacks"), list):
        raise ReportError(what)
    stacks: list[StackPreview] = []
    for item in data["stacks"]:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("stack"), str)
            or not isinstance(item.get("status"), str)
        ):
            raise ReportError(f"{what} (a stack without a name or status)")
        changes = item.get("changes") or {}
        violations = item.get("policy_violations") or []
        if not isinstance(changes, dict) or not all(isinstance(n, int) for n in changes.values()):
            raise ReportError(f"{what} (changes of {item['stack']})")
        if not isinstance(violations, list):
            raise ReportError(f"{what} (policy_violations of {item['stack']})")
        error = item.get("error")
        stacks.append(
            StackPreview(
                item["stack"], item["status"], changes, tuple(str(v) for v in violations), str(error) if error else None
            )
        )
    not_run = [str(s) for s in data.get("orphans") or []]
    return Preview(tuple(stacks), tuple(not_run))


# ---- rendering -----------------------------------------------------------------------------------------


def _bytes(value: Decimal) -> str:
    return format_bytes(value) if value else "0"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


def _cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _signed_money(value: Decimal) -> str:
    rounded = value.quantize(CENT)
    if rounded == 0:
        return "±0.00"
    return f"+{rounded:,}" if rounded > 0 else f"-{-rounded:,}"


_FORMATS = {
    "cpu": format_cpu,
    "memory": _bytes,
    "gpu": lambda v: str(int(v)),
    "storage": _bytes,
}


def _amount(name: str, value: Decimal | int | None) -> str:
    return "—" if value is None else _FORMATS[name](Decimal(value))


def _from_to(name: str, before: Amounts | None, after: Amounts | None) -> str:
    old = getattr(before, name) if before else None
    new = getattr(after, name) if after else None
    if old == new:
        return _amount(name, new)
    diff = Decimal(new or 0) - Decimal(old or 0)
    sign = "+" if diff > 0 else "-"
    return f"{_amount(name, old)} → {_amount(name, new)} ({sign}{_FORMATS[name](abs(diff))})"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _headline(report: ChangeReport) -> list[str]:
    verdict = {
        "invalid": f"❌ **The roster is invalid** ({_plural(len(report.errors), 'error')}): nothing can be applied.",
        "refused": f"⛔ **Refused: {_plural(len(report.refused), 'change')} cannot be applied.** Fix before merging.",
        "preview-failed": "❌ **The preview failed or found policy violations** (see Preview).",
        "ok": "✅ **Safe to apply**: nothing refused, no data released.",
    }[report.verdict]
    if report.verdict == "ok" and (report.volumes or report.archived):
        verdict = "✅ **Nothing refused.** Check the data at risk below before approving."
    lines = [verdict]
    if report.cluster and report.cluster.over:
        lines.append(f"⚠️ **Over the cluster's declared capacity: {', '.join(report.cluster.over)}.**")
    return lines


def _summary(report: ChangeReport) -> str:
    parts = []
    people = [
        f"{len(names)} {what}"
        for names, what in ((report.freelancers_added, "added"), (report.freelancers_removed, "removed"))
        if names
    ]
    if people:
        parts.append(f"Freelancers: {', '.join(people)}")
    counts = report.counts()
    sandboxes = [f"{counts[kind.value]} {kind.value}" for kind in ChangeKind if counts[kind.value]]
    parts.append(f"Sandboxes: {', '.join(sandboxes)}" if sandboxes else "No sandbox changes")
    if report.cost is not None:
        c = report.cost
        parts.append(
            f"Cost: **{_signed_money(c.after - c.before)} {c.currency}/month** "
            f"({c.before.quantize(CENT):,} → {c.after.quantize(CENT):,})"
        )
    parts.append(f"**{len(report.stacks)} of {report.stacks_total} stacks** run")
    return " · ".join(parts)


def _risks(report: ChangeReport) -> list[tuple[str, str, str]]:
    """Rows of the data-at-risk table: namespaces first, then volumes (a sandbox's two in one row; none for a
    namespace already listed), then archived sandboxes."""
    rows: list[tuple[str, str, str]] = []
    gone = {ns.namespace for ns in report.namespaces}
    for ns in report.namespaces:
        detail = f"{ns.why}; deletes the {_plural(ns.volumes, 'volume')} in it"
        rows.append((f"{'⛔ ' if ns.refused else ''}namespace deleted", f"`{ns.namespace}` ({ns.client})", detail))
    grouped: dict[tuple[str, str, str, str, bool], list[VolumeRisk]] = {}
    for v in report.volumes:
        if v.namespace not in gone or v.why.startswith("shrink"):
            grouped.setdefault((v.namespace, v.freelancer, v.client, v.why, v.refused), []).append(v)
    for (namespace, freelancer, client, why, refused), volumes in grouped.items():
        what = "volume shrunk" if why.startswith("shrink") else _plural(len(volumes), "volume") + " released"
        names = ", ".join(f"`{v.name}` ({v.size})" for v in volumes)
        rows.append(
            (f"{'⛔ ' if refused else ''}{what}", f"{freelancer} at {client}", f"{names} in `{namespace}`: {why}")
        )
    for c in report.archived:
        rows.append(("sandbox archived", f"{c.freelancer} at {c.client}", _STATE_NOTES[ChangeKind.ARCHIVED]))
    return rows


def _refusal(line: str) -> str:
    """A refusal diagnostic as a list item: its location in code, the message as text."""
    location, _, rest = line.partition(": ")
    return f"- `{location}`: {_cell(rest)}" if rest else f"- {_cell(line)}"


def to_markdown(report: ChangeReport) -> str:
    """The pull request comment: verdict, refusals, data at risk, then the tables, most important first."""
    out = [f"## Roster change · `{report.environment}` · compared with `{report.base}`", ""]
    out += _headline(report)
    if report.errors:
        out += ["", "```", *report.errors, "```"]
        out += _preview_section(report.preview)
        return "\n".join(out) + "\n"
    out += ["", _summary(report)]
    if report.refused:
        out += ["", "### ⛔ Refused", ""]
        out += [_refusal(line) for line in report.refused]
    out += ["", "### Data at risk", ""]
    risks = _risks(report)
    if risks:
        out += _table(["risk", "where", "detail"], risks)
    else:
        out.append("None: no volume released or shrunk, no sandbox archived, no namespace deleted.")
    if report.changes:
        priced = report.cost is not None
        header = ["change", "freelancer", "client", "what"] + (
            [f"cost/month ({report.cost.currency})"] if report.cost else []
        )
        rows = []
        for c in report.changes:
            row: list[object] = [
                ("⛔ " if c.refused else "") + c.kind.value,
                c.freelancer,
                c.client,
                "; ".join(c.details),
            ]
            if priced:
                row.append(_signed_money(c.monthly_cost or Decimal(0)))
            rows.append(row)
        out += ["", "### Freelancers", "", *_table(header, rows)]
    if report.quotas:
        rows = [
            [q.client, *(_from_to(name, q.before, q.after) for name in ("cpu", "memory", "gpu", "storage"))]
            for q in report.quotas
        ]
        out += ["", "### Client quotas (requests)", "", *_table(["client", "CPU", "memory", "GPU", "storage"], rows)]
    if report.cluster is not None:
        out += ["", *_cluster_section(report.cluster)]
    out += ["", f"### Stacks that run ({len(report.stacks)} of {report.stacks_total})", ""]
    if report.stacks:
        out += _table(["stack", "why"], [[f"`{s}`", why] for s, why in report.stacks])
    else:
        out.append("None: nothing in the cluster changes.")
    if report.stacks_not_run:
        out.append("")
    for stack in report.stacks_not_run:
        out.append(f"- not run: `{stack}`: its clients left the roster (offboard it by hand: docs/offboarding.md)")
    out += _preview_section(report.preview)
    if report.notes:
        out += ["", "### Notes", "", *(f"- {note}" for note in report.notes)]
    return "\n".join(out) + "\n"


def _cluster_section(cluster: ClusterFit) -> list[str]:
    names = ("cpu", "memory", "gpu", "storage")
    rows: list[list[object]] = [["reserved", *(_from_to(n, cluster.before, cluster.after) for n in names)]]
    if cluster.capacity is not None:
        cells: list[object] = ["capacity"]
        for n in names:
            limit = getattr(cluster.capacity, n)
            cells.append(
                "not declared" if limit is None else _amount(n, limit) + (" ⛔ over" if n in cluster.over else " ✅")
            )
        rows.append(cells)
    lines = ["### Cluster (every quota's requests)", "", *_table(["", "CPU", "memory", "GPU", "storage"], rows)]
    if cluster.capacity is None:
        lines += ["", "No capacity declared (stack setting `clusterCapacity`): nothing to check against."]
    return lines


def _preview_section(preview: Preview | None) -> list[str]:
    if preview is None:
        return []
    lines = ["", "### Preview (with the policy pack)", ""]
    if not preview.stacks:
        lines.append("No stack to preview.")
    else:
        rows = [
            [f"`{s.stack}`", s.status, *(s.changes.get(c, 0) for c in PREVIEW_COLUMNS), len(s.policy_violations)]
            for s in preview.stacks
        ]
        lines += _table(["stack", "result", *PREVIEW_COLUMNS, "policy violations"], rows)
    violations = [(s.stack, v) for s in preview.stacks for v in s.policy_violations]
    if violations:
        lines += ["", "**Policy violations**", ""]
        lines += [f"- `{stack}`: {_cell(v)}" for stack, v in violations]
    failed = [s for s in preview.stacks if s.status != "ok"]
    for s in failed:
        lines += ["", f"<details><summary>{s.status}: <code>{s.stack}</code></summary>", "", "```"]
        lines += [(s.error or "no error message").replace("```", "'''"), "```", "", "</details>"]
    if preview.not_run:
        lines.append("")
    for stack in preview.not_run:
        lines.append(f"- not run: `{stack}`: no client in the roster owns it")
    return lines


def to_json_text(report: ChangeReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
