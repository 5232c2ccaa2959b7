"""What the policies look at: Kubernetes objects as plain data, and the platform's naming facts.

The engine hands a policy its resource's properties through proxies that raise when a value is not
known yet (during a preview, an output of a resource that does not exist yet). :func:`to_plain` turns
them into ordinary dicts and lists once, with :data:`UNKNOWN` in place of such values, so every check
is a pure function over plain data and decides explicitly what an unknown value means (always: "not
checkable now"; the same policy runs again with known values before ``pulumi up`` changes anything).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pulumi_policy import PolicyResource, ResourceValidationArgs
from pulumi_policy.proxy import UnknownValueError

# The platform's naming facts have one home, in the program; the pack imports them.
from sandbox_infra.naming import (
    CLIENT_LABEL,
    CLIENT_NAMESPACE_PREFIX,
    CRD_GROUP,
    CRD_KIND,
    CRD_VERSION,
    SANDBOX_APP,
    SANDBOX_VOLUMES,
)
from sandbox_policies.once import remembered


class Unknown:
    """A value the engine cannot know yet (a preview of something that depends on a new resource)."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Final = Unknown()


# Pulumi type tokens of what the program declares (pulumi-kubernetes 4.x).
NAMESPACE = "kubernetes:core/v1:Namespace"
RESOURCE_QUOTA = "kubernetes:core/v1:ResourceQuota"
LIMIT_RANGE = "kubernetes:core/v1:LimitRange"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SECRET = "kubernetes:core/v1:Secret"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SERVICE = "kubernetes:core/v1:Service"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
SANDBOX = f"kubernetes:{CRD_GROUP}/{CRD_VERSION}:{CRD_KIND}"

# Workloads whose pod templates the container policies check, and where each keeps its pod spec.
POD_SPEC_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    STATEFULSET: ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# The platform's naming and labelling facts come from the program (sandbox_infra/naming.py, tiers.py).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SANDBOX_NAME = re.compile(rf"^{SANDBOX_APP}-(?P<id>{_UUID})$")
VOLUME_NAME = re.compile(rf"^(?P<volume>{'|'.join(SANDBOX_VOLUMES)})-(?P<id>{_UUID})$")


def to_plain(value: object) -> Any:
    """Engine proxies -> plain dicts/lists, with :data:`UNKNOWN` for values not known during a preview."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key in value:
            try:
                item = value[key]
            except UnknownValueError:
                result[str(key)] = UNKNOWN
                continue
            result[str(key)] = to_plain(item)
        return result
    if isinstance(value, Sequence):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(to_plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def get(value: object, *path: str | int) -> Any:
    """``value[path[0]][path[1]]...``, or None where the path does not exist (UNKNOWN stays UNKNOWN)."""
    for key in path:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(key, int):
            if not isinstance(value, list) or not -len(value) <= key < len(value):
                return None
            value = value[key]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
    return value


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Resource:
    """One resource as a policy sees it: Pulumi identity, properties as plain data, and the ``protect`` option."""

    type: str
    urn: str
    name: str
    """Pulumi logical name."""
    props: dict[str, Any]
    """Inputs for resource policies, outputs for stack policies (the same Kubernetes shape)."""
    protect: bool = False

    @classmethod
    def from_args(cls, args: ResourceValidationArgs) -> Resource:
        props = remembered("plain", args.props, lambda: to_plain(args.props))  # once per request (once.py)
        return cls(args.resource_type, args.urn, args.name, props, bool(args.opts.protect))

    @classmethod
    def from_stack(cls, resource: PolicyResource) -> Resource:
        props = remembered("plain", resource.props, lambda: to_plain(resource.props))  # once per request (once.py)
        return cls(resource.resource_type, resource.urn, resource.name, props, bool(resource.opts.protect))

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def metadata(self) -> dict[str, Any]:
        return as_dict(self.props.get("metadata"))

    @property
    def labels(self) -> dict[str, Any]:
        return as_dict(self.metadata.get("labels"))

    @property
    def k8s_name(self) -> str | None:
        return as_str(self.metadata.get("name"))

    @property
    def namespace(self) -> str | None:
        """``metadata.namespace``; while a preview cannot know it yet, the namespace its client label implies."""
        namespace = self.metadata.get("namespace")
        if isinstance(namespace, str):
            return namespace
        client = self.labels.get(CLIENT_LABEL)
        if namespace is UNKNOWN and isinstance(client, str):
            return CLIENT_NAMESPACE_PREFIX + client
        return None

    @property
    def spec(self) -> dict[str, Any]:
        return as_dict(self.props.get("spec"))

    def describe(self) -> str:
        """``StatefulSet client-…/sandbox-…`` (the Kubernetes identity; the engine prints the Pulumi one)."""
        name = self.k8s_name or f"(Pulumi name {self.name})"
        namespace = self.namespace
        return f"{self.kind} {namespace}/{name}" if namespace else f"{self.kind} {name}"

    def pod_spec(self) -> dict[str, Any] | None:
        """The pod spec of a workload (a Pod's spec, or the template of a controller), else None."""
        path = POD_SPEC_PATHS.get(self.type)
        if path is None:
            return None
        return as_dict(get(self.props, *path))

    def pod_labels(self) -> dict[str, Any]:
        """Labels of the pods a workload creates."""
        path = POD_SPEC_PATHS.get(self.type)
        if path is None:
            return {}
        if len(path) == 1:
            return self.labels
        return as_dict(get(self.props, *path[:-1], "metadata", "labels"))


def is_client_namespace(resource: Resource) -> bool:
    """A client's namespace: ``client-<uuid>``, labelled with its client id."""
    name = resource.k8s_name or ""
    return resource.type == NAMESPACE and (name.startswith(CLIENT_NAMESPACE_PREFIX) or CLIENT_LABEL in resource.labels)


def containers(pod_spec: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every container of a pod spec, init containers first, each with a label for messages."""
    result: list[tuple[str, dict[str, Any]]] = []
    for field, what in (("initContainers", "init container"), ("containers", "container")):
        for container in as_list(pod_spec.get(field)):
            if isinstance(container, dict):
                name = container.get("name")
                result.append((f"{what} '{name}'" if isinstance(name, str) else what, container))
    return result


@dataclass(frozen=True)
class Violation:
    """A stack policy's finding, attached to the resource a person should look at."""

    urn: str | None
    message: str


def by_namespace(resources: list[Resource], type_: str) -> dict[str, list[Resource]]:
    """Resources of one type grouped by namespace (those whose namespace cannot be told are left out)."""
    result: dict[str, list[Resource]] = {}
    for resource in resources:
        namespace = resource.namespace
        if resource.type == type_ and namespace is not None:
            result.setdefault(namespace, []).append(resource)
    return result
