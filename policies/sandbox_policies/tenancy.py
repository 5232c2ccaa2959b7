"""Stack rules for each client's namespace: it is bounded and isolated, and its bounds admit its own sandboxes.

These run on the whole stack (the engine passes every resource's outputs, preview values during a
preview): a namespace and its ResourceQuota are separate resources, and whether a quota is big enough
depends on every workload and volume declared in its namespace.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sandbox_policies.model import (
    LIMIT_RANGE,
    NETWORK_POLICY,
    POD_SPEC_PATHS,
    PVC,
    RESOURCE_QUOTA,
    UNKNOWN,
    Resource,
    Violation,
    as_dict,
    as_list,
    by_namespace,
    get,
    is_client_namespace,
)
from sandbox_policies.quantity import QuantityError, format_quantity, parse_quantity
from sandbox_policies.workloads import pod_resources


def _is_empty_selector(selector: object) -> bool:
    selector = as_dict(selector)
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def denies_by_default(policy: Resource, direction: str) -> bool:
    """Whether a NetworkPolicy selects every pod of its namespace and allows nothing in ``direction``.

    A policy a preview cannot see yet counts as one: it is judged once its values are known.
    """
    spec = policy.props.get("spec")
    if spec is UNKNOWN:
        return True
    spec = as_dict(spec)
    selector, types, rules = spec.get("podSelector"), spec.get("policyTypes"), spec.get(direction.lower())
    if any(value is UNKNOWN for value in (selector, types, rules)):
        return True
    if not isinstance(selector, dict) or not _is_empty_selector(selector):
        return False
    if not isinstance(types, list):  # the API server's defaulting
        types = ["Ingress", *(["Egress"] if "egress" in spec else [])]
    return direction in types and not as_list(rules)


def check_tenant_objects(resources: list[Resource]) -> list[Violation]:
    """Every client namespace has a ResourceQuota, a LimitRange and default-deny ingress and egress."""
    quotas = by_namespace(resources, RESOURCE_QUOTA)
    limit_ranges = by_namespace(resources, LIMIT_RANGE)
    network_policies = by_namespace(resources, NETWORK_POLICY)
    violations = []
    for namespace in filter(is_client_namespace, resources):
        name = namespace.k8s_name
        if name is None:
            continue
        missing = []
        if not quotas.get(name):
            missing.append("ResourceQuota")
        if not limit_ranges.get(name):
            missing.append("LimitRange")
        for direction in ("Ingress", "Egress"):
            if not any(denies_by_default(p, direction) for p in network_policies.get(name, [])):
                missing.append(f"default-deny {direction} NetworkPolicy")
        if missing:
            violations.append(
                Violation(
                    namespace.urn,
                    f"{namespace.describe()}: this client namespace has no {', '.join(missing)}. Fix: declare the "
                    "namespace through ClientTenant, which adds ResourceQuota sandbox-quota, LimitRange "
                    "sandbox-defaults and NetworkPolicy default-deny (podSelector: {}, policyTypes: [Ingress, "
                    "Egress], no rules).",
                )
            )
    return violations


def pods_of(workload: Resource) -> int:
    """How many pods a workload needs room for. A controller scaled to zero counts as one: a suspended sandbox
    keeps its reservation, so resuming it never fails on quota. A DaemonSet counts as one pod (its node
    count is not in the stack), so for DaemonSets this is a lower bound."""
    spec = workload.spec
    kind = workload.kind
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        return _count(spec.get("replicas"))
    if kind in ("Job", "CronJob"):
        parallelism = get(spec, "parallelism") if kind == "Job" else get(spec, "jobTemplate", "spec", "parallelism")
        return _count(parallelism)
    return 1


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def namespace_demand(resources: list[Resource]) -> dict[str, dict[str, list[tuple[str, Decimal]]]]:
    """Per namespace and quota key, what each workload or claim in it needs: ``{ns: {key: [(who, amount)]}}``."""
    demand: dict[str, dict[str, list[tuple[str, Decimal]]]] = defaultdict(lambda: defaultdict(list))
    for type_ in POD_SPEC_PATHS:
        for namespace, workloads in by_namespace(resources, type_).items():
            for workload in workloads:
                pod = workload.pod_spec()
                if pod is None:
                    continue
                pods = pods_of(workload)
                who = workload.describe() + (f" x{pods}" if pods > 1 else "")
                demand[namespace]["pods"].append((who, Decimal(pods)))
                for side, values in pod_resources(pod).items():
                    for name, amount in values.items():
                        demand[namespace][f"{side}.{name}"].append((who, amount * pods))
    for namespace, claims in by_namespace(resources, PVC).items():
        for claim in claims:
            demand[namespace]["persistentvolumeclaims"].append((claim.describe(), Decimal(1)))
            size = get(claim.spec, "resources", "requests", "storage")
            try:
                demand[namespace]["requests.storage"].append((claim.describe(), parse_quantity(size)))
            except QuantityError:
                continue  # unknown during a preview, or reported by the PVC size policy
    return demand


# Quota keys that are another name for a key computed above.
_ALIASES = {
    "cpu": "requests.cpu",
    "memory": "requests.memory",
    "storage": "requests.storage",
    "count/pods": "pods",
    "count/persistentvolumeclaims": "persistentvolumeclaims",
}


def _format(key: str, amount: Decimal) -> str:
    return format_quantity(amount, cpu=key.endswith("cpu"))


def check_quota_coverage(resources: list[Resource]) -> list[Violation]:
    """Each ResourceQuota admits everything its namespace declares: the sum of its pods' requests and limits
    (and GPUs), its pod count, and its claims' count and storage. The API server would otherwise reject the
    last sandboxes only during ``pulumi up``."""
    demand = namespace_demand(resources)
    violations = []
    for quota in (r for r in resources if r.type == RESOURCE_QUOTA):
        namespace = quota.namespace
        spec = quota.spec
        hard = spec.get("hard")
        if namespace is None or not isinstance(hard, dict) or spec.get("scopes") or spec.get("scopeSelector"):
            continue  # scoped quotas count only some pods; not modelled
        problems = []
        for raw_key, limit_text in hard.items():
            key = str(raw_key)
            needs = demand[namespace].get(_ALIASES.get(key, key))
            if not needs or limit_text is UNKNOWN:
                continue
            try:
                limit = parse_quantity(limit_text)
            except QuantityError:
                problems.append(f"hard {key} {limit_text!r} is not a quantity")
                continue
            total = sum((amount for _, amount in needs), Decimal(0))
            if total > limit:
                biggest = sorted(needs, key=lambda need: need[1], reverse=True)[:3]
                shown = ", ".join(f"{who} {_format(key, amount)}" for who, amount in biggest)
                more = f", and {len(needs) - len(biggest)} more" if len(needs) > len(biggest) else ""
                problems.append(f"hard {key} {_format(key, limit)} < {_format(key, total)} needed ({shown}{more})")
        if problems:
            violations.append(
                Violation(
                    quota.urn,
                    f"{quota.describe()}: the quota cannot admit what its namespace declares: {'; '.join(problems)}. "
                    "Fix: the quota must be the sum of the namespace's sandbox budgets (ClientTenant's QuotaBudget "
                    "from the roster: every active and suspended sandbox's tier, every volume); raise spec.hard or "
                    "lower the pods' resources.",
                )
            )
    return violations
