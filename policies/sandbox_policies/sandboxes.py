"""Stack rule for each sandbox: its parts exist together, so no sandbox is half-declared.

A sandbox is keyed by (namespace, freelancer id) and consists of a ``Sandbox`` object, a workspace and a
home PersistentVolumeClaim, and, unless the Sandbox's ``spec.state`` is ``archived``, a headless Service
(its StatefulSet comes and goes with the state; the compute policies cover it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox_infra.naming import FREELANCER_LABEL, SANDBOX_VOLUMES, VOLUME_LABEL
from sandbox_policies.model import (
    PVC,
    SANDBOX,
    SANDBOX_NAME,
    SERVICE,
    STATEFULSET,
    UNKNOWN,
    VOLUME_NAME,
    Resource,
    Violation,
    get,
)
from sandbox_policies.storage import is_sandbox_volume
from sandbox_policies.workloads import is_sandbox_workload


@dataclass
class SandboxParts:
    sandbox: Resource | None = None
    service: Resource | None = None
    statefulset: Resource | None = None
    volumes: dict[str, Resource] = field(default_factory=dict)

    def anchor(self) -> Resource:
        """The resource a violation is reported on: the Sandbox object if there is one."""
        for part in (self.sandbox, self.statefulset, self.service, *self.volumes.values()):
            if part is not None:
                return part
        raise AssertionError("a sandbox is only known through one of its parts")


def _freelancer(resource: Resource) -> str | None:
    label = resource.labels.get(FREELANCER_LABEL)
    if isinstance(label, str):
        return label
    name = resource.k8s_name or ""
    match = SANDBOX_NAME.match(name) or VOLUME_NAME.match(name)
    if match:
        return match.group("id")
    spec_id = get(resource.spec, "freelancerId")
    return spec_id if isinstance(spec_id, str) else None


def _role(resource: Resource) -> str | None:
    """What part of a sandbox a resource is, if any."""
    if resource.type == SANDBOX:
        return "sandbox"
    if resource.type == PVC and is_sandbox_volume(resource):
        label = resource.labels.get(VOLUME_LABEL)
        if label in SANDBOX_VOLUMES:
            return str(label)
        match = VOLUME_NAME.match(resource.k8s_name or "")
        return match.group("volume") if match else None
    is_sandbox_named = bool(SANDBOX_NAME.match(resource.k8s_name or ""))
    if resource.type == SERVICE and (is_sandbox_named or resource.labels.get("app.kubernetes.io/name") == "sandbox"):
        return "service"
    if resource.type == STATEFULSET and (is_sandbox_named or is_sandbox_workload(resource)):
        return "statefulset"
    return None


def collect(resources: list[Resource]) -> dict[tuple[str, str], SandboxParts]:
    sandboxes: dict[tuple[str, str], SandboxParts] = {}
    for resource in resources:
        role = _role(resource)
        freelancer = _freelancer(resource)
        namespace = resource.namespace
        if role is None or freelancer is None or namespace is None:
            continue
        parts = sandboxes.setdefault((namespace, freelancer), SandboxParts())
        if role in SANDBOX_VOLUMES:
            parts.volumes[role] = resource
        else:
            setattr(parts, role, resource)
    return sandboxes


def check_sandboxes_complete(resources: list[Resource]) -> list[Violation]:
    """Every sandbox has both volumes, a Sandbox object, and a Service unless it is archived."""
    violations = []
    for (namespace, freelancer), parts in sorted(collect(resources).items()):
        missing = []
        if parts.sandbox is None:
            missing.append(f"the Sandbox object sandbox-{freelancer}")
        for volume in SANDBOX_VOLUMES:
            if volume not in parts.volumes:
                missing.append(f"the {volume} PersistentVolumeClaim {volume}-{freelancer}")
        if parts.sandbox is not None:
            state = get(parts.sandbox.spec, "state")
            needs_service = state is not UNKNOWN and state != "archived"
        else:
            needs_service = parts.statefulset is not None
        if needs_service and parts.service is None:
            missing.append(f"the Service sandbox-{freelancer} (needed unless the Sandbox's spec.state is archived)")
        if missing:
            violations.append(
                Violation(
                    parts.anchor().urn,
                    f"sandbox of freelancer {freelancer} in namespace {namespace} has no {'; no '.join(missing)}. "
                    "Fix: declare each sandbox only through FreelancerSandbox (one roster entry), which creates both "
                    "volumes, the Service (unless archived) and the Sandbox object together.",
                )
            )
    return violations
