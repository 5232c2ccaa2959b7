"""Rules for what runs: every container's resources, security context and image, and a sandbox's tier.

Each check takes a workload (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) and
returns one message per offending container: which object, which container, what is wrong, how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sandbox_infra import images
from sandbox_infra.naming import APP_NAME_LABEL, SANDBOX_APP, TIER_LABEL
from sandbox_infra.tiers import GPU_RESOURCE
from sandbox_policies.config import TierBudget
from sandbox_policies.model import UNKNOWN, Resource, as_dict, as_list, containers, get
from sandbox_policies.quantity import QuantityError, format_quantity, parse_quantity

SIDES = ("requests", "limits")
_COMPUTE = ("cpu", "memory")

FIX_RESOURCES = (
    "Fix: set resources.requests and resources.limits for cpu and memory on every container, init "
    "containers included, with each request at most its limit (sandboxes get theirs from the tier table)."
)
FIX_SECURITY = (
    "Fix: give the pod securityContext {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}} and each "
    "container {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}; no privileged, no added "
    "capabilities, no hostNetwork/hostPID/hostIPC, no hostPath volumes."
)
FIX_IMAGES = (
    "Fix: push the image to an allowed registry (mirror third-party images) and reference it by a fixed "
    "version tag or an @sha256 digest, never :latest or no tag."
)
FIX_API_KEYS = (
    "Fix: keep the key in a Secret (from `pulumi config set --secret`) and mount it as a read-only file, as the "
    "sandbox's ~/.gemini/.env is (not an environment variable: see kubernetes-core-v1-pod-secrets-as-files)."
)
FIX_TIER = (
    "Fix: keep the pod within its tier's budget (sandbox_infra/tiers.py splits it between the containers), "
    "or move the sandbox to a bigger tier in the roster."
)


def check_resources(resource: Resource) -> list[str]:
    """Every container sets cpu and memory requests and limits, and no request exceeds its limit."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    messages = []
    for label, container in containers(pod):
        spec = container.get("resources")
        if spec is UNKNOWN:
            continue
        missing: list[str] = []
        problems: list[str] = []
        values: dict[tuple[str, str], Decimal] = {}
        for side in SIDES:
            for what in _COMPUTE:
                value = get(spec, side, what)
                if value is UNKNOWN:
                    continue
                if value is None:
                    missing.append(f"{side}.{what}")
                    continue
                try:
                    values[side, what] = parse_quantity(value)
                except QuantityError as exc:
                    problems.append(f"{side}.{what}: {exc}")
        if missing:
            problems.insert(0, f"sets no {', '.join(missing)}")
        for what in _COMPUTE:
            request, limit = values.get(("requests", what)), values.get(("limits", what))
            if request is not None and limit is not None and request > limit:
                problems.append(
                    f"requests.{what} {format_quantity(request, cpu=what == 'cpu')} exceeds "
                    f"limits.{what} {format_quantity(limit, cpu=what == 'cpu')}"
                )
        if problems:
            messages.append(f"{resource.describe()}: {label} {'; '.join(problems)}. {FIX_RESOURCES}")
    return messages


def _effective(container_context: Mapping[str, Any], pod_context: Mapping[str, Any], key: str) -> Any:
    """A container's setting overrides the pod's."""
    value = container_context.get(key)
    return pod_context.get(key) if value is None else value


def check_security(resource: Resource) -> list[str]:
    """Pod Security ``restricted`` and then some: no privilege, no host access, non-root, drop ALL, RuntimeDefault."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    subject = resource.describe()
    messages = []
    pod_problems = [f"sets {field}: true" for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field) is True]
    for volume in as_list(pod.get("volumes")):
        if isinstance(volume, dict) and volume.get("hostPath") is not None:
            pod_problems.append(f"mounts hostPath volume '{volume.get('name')}'")
    if pod_problems:
        messages.append(f"{subject}: the pod {'; '.join(pod_problems)}. {FIX_SECURITY}")

    pod_context = get(pod, "securityContext")
    pod_context = {} if pod_context is UNKNOWN else as_dict(pod_context)
    for label, container in containers(pod):
        context = container.get("securityContext")
        if context is UNKNOWN:
            continue
        context = as_dict(context)
        problems = []
        if context.get("privileged") is True:
            problems.append("is privileged")
        escalation = context.get("allowPrivilegeEscalation")
        if escalation is not False and escalation is not UNKNOWN:
            problems.append("does not set allowPrivilegeEscalation: false")
        capabilities = context.get("capabilities")
        added = get(capabilities, "add")
        if isinstance(added, list) and added:
            problems.append(f"adds capabilities {', '.join(map(str, added))}")
        dropped = get(capabilities, "drop")
        if dropped is not UNKNOWN and "ALL" not in as_list(dropped):
            problems.append("does not drop ALL capabilities")
        non_root = _effective(context, pod_context, "runAsNonRoot")
        if non_root is not True and non_root is not UNKNOWN:
            problems.append("does not set runAsNonRoot: true (on the container or the pod)")
        user = _effective(context, pod_context, "runAsUser")
        if user == 0 and not isinstance(user, bool):
            problems.append("runs as UID 0")
        seccomp = _effective(context, pod_context, "seccompProfile")
        seccomp_type = get(seccomp, "type") if seccomp is not UNKNOWN else UNKNOWN
        if seccomp_type is not UNKNOWN and seccomp_type != "RuntimeDefault":
            problems.append(f"has seccomp profile {seccomp_type or 'unset'} (needs RuntimeDefault)")
        if problems:
            messages.append(f"{subject}: {label} {'; '.join(problems)}. {FIX_SECURITY}")
    return messages


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/team/app:1.2@sha256:…`` -> (``registry:5000/team/app``, ``1.2``, ``sha256:…``)."""
    ref = images.split(image)
    return ref.repository, ref.tag, ref.digest


def check_images(resource: Resource, registries: list[str]) -> list[str]:
    """Every image comes from an allowed registry and is pinned (a tag other than ``latest``, or a digest)."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    messages = []
    for label, container in containers(pod):
        image = container.get("image")
        if image is UNKNOWN:
            continue
        if not isinstance(image, str) or not image:
            messages.append(f"{resource.describe()}: {label} names no image. {FIX_IMAGES}")
            continue
        problems = []
        if not any(image.startswith(prefix) for prefix in registries):
            problems.append(f"is not from an allowed registry ({', '.join(registries)})")
        _, tag, digest = split_image(image)
        if digest is None and tag is None:
            problems.append("has no tag (it would pull :latest)")
        elif digest is None and tag == "latest":
            problems.append("uses the :latest tag")
        if problems:
            messages.append(f"{resource.describe()}: {label} image '{image}' {' and '.join(problems)}. {FIX_IMAGES}")
    return messages


def check_api_key_env(resource: Resource, patterns: list[str]) -> list[str]:
    """No container gets an API key as a literal ``env[].value``: it would sit in plain text in the pod spec
    (readable by anyone who can get pods) and in the program's inputs."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    messages = []
    for label, container in containers(pod):
        literal = [
            str(env.get("name"))
            for env in as_list(container.get("env"))
            if isinstance(env, dict)
            and isinstance(env.get("name"), str)
            and any(p in env["name"].lower() for p in patterns)
            and env.get("value") not in (None, "", UNKNOWN)
        ]
        if literal:
            messages.append(
                f"{resource.describe()}: {label} sets {', '.join(literal)} to a literal value. {FIX_API_KEYS}"
            )
    return messages


def _quantities(value: object) -> dict[str, Decimal]:
    result = {}
    for name, quantity in as_dict(value).items():
        try:
            result[name] = parse_quantity(quantity)
        except QuantityError:
            continue  # reported by check_resources; counts as nothing here
    return result


def pod_resources(pod: Mapping[str, Any]) -> dict[str, dict[str, Decimal]]:
    """What the scheduler and a ResourceQuota count for one pod: per resource, the larger of the sum over its
    containers and the largest init container; a request left out defaults to its limit."""
    totals: dict[str, dict[str, Decimal]] = {side: {} for side in SIDES}
    init_max: dict[str, dict[str, Decimal]] = {side: {} for side in SIDES}
    for field, into, combine in (("containers", totals, Decimal.__add__), ("initContainers", init_max, max)):
        for container in as_list(pod.get(field)):
            spec = as_dict(as_dict(container).get("resources"))
            limits = _quantities(spec.get("limits"))
            requests = {**limits, **_quantities(spec.get("requests"))}
            for side, values in (("requests", requests), ("limits", limits)):
                for name, value in values.items():
                    into[side][name] = combine(into[side].get(name, Decimal(0)), value)
    for side in SIDES:
        for name, value in init_max[side].items():
            totals[side][name] = max(totals[side].get(name, Decimal(0)), value)
    return totals


def is_sandbox_workload(resource: Resource) -> bool:
    return resource.pod_labels().get(APP_NAME_LABEL) == SANDBOX_APP


def check_tier(resource: Resource, tiers: Mapping[str, TierBudget]) -> list[str]:
    """A sandbox pod fits its tier's budget as a whole, and only GPU tiers get a GPU."""
    pod = resource.pod_spec()
    if pod is None or not is_sandbox_workload(resource):
        return []
    subject = resource.describe()
    tier = resource.pod_labels().get(TIER_LABEL)
    if tier is UNKNOWN:
        return []
    if not isinstance(tier, str):
        return [f"{subject}: the sandbox pod has no {TIER_LABEL} label. Fix: label it with its roster tier."]
    budget = tiers.get(tier)
    if budget is None:
        return [
            f"{subject}: tier '{tier}' is not in the tier table ({', '.join(tiers)}). "
            "Fix: use a known tier, or add it to the policy config's tiers."
        ]
    totals = pod_resources(pod)
    problems = []
    for side in SIDES:
        cap = budget.requests if side == "requests" else budget.limits
        for what in _COMPUTE:
            used = totals[side].get(what, Decimal(0))
            if cap is not None and used > cap[what]:
                cpu = what == "cpu"
                problems.append(
                    f"{side}.{what} {format_quantity(used, cpu=cpu)} exceeds the tier's "
                    f"{format_quantity(cap[what], cpu=cpu)}"
                )
    gpus = max(totals["requests"].get(GPU_RESOURCE, Decimal(0)), totals["limits"].get(GPU_RESOURCE, Decimal(0)))
    if gpus and not budget.gpu:
        problems.append(f"requests {format_quantity(gpus)} {GPU_RESOURCE} but the tier has no GPU")
    if not problems:
        return []
    return [f"{subject}: the {tier}-tier sandbox pod {'; '.join(problems)}. {FIX_TIER}"]
