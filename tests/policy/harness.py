"""Feeds the pack what the program really declares, the way the Pulumi engine does.

The example roster runs through the real program under Pulumi's mocks; each resource's inputs are kept in
wire form (Pulumi secrets still wrapped in their signature, as the engine sends them to an analyzer) with
its URN and ``protect`` option. A test copies the stack, breaks one thing, and calls a policy's own
validator with ``ResourceValidationArgs``/``StackValidationArgs`` built as pulumi-policy builds them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy
from sandbox_policies import secrets
from sandbox_policies.model import POD_SPEC_PATHS
from sandbox_policies.pack import all_policies

from sandbox_infra.plan import ALL_SLICES
from tests.unit.mocks import resolve, run_example

POLICIES = {policy.name: policy for policy in all_policies()}


@dataclass(frozen=True)
class Declared:
    """One resource the program declared: type, logical name, URN, wire-form inputs, ``protect``."""

    type: str
    name: str
    urn: str
    wire: dict[str, Any]
    protect: bool = False

    @property
    def k8s_name(self) -> str:
        return str(self.wire.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.wire.get("metadata", {}).get("namespace", ""))

    def edited(self) -> Declared:
        """A deep copy to break."""
        return replace(self, wire=copy.deepcopy(self.wire))

    def pod_spec(self) -> dict[str, Any]:
        """The pod spec of a workload, to edit in place."""
        spec: Any = self.wire
        for key in POD_SPEC_PATHS[self.type]:
            spec = spec[key]
        return cast(dict[str, Any], spec)

    def container(self, name: str) -> dict[str, Any]:
        pod = self.pod_spec()
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if container["name"] == name:
                return cast(dict[str, Any], container)
        raise KeyError(name)


def declare_example(roster: Path, slice_id: str = ALL_SLICES) -> list[Declared]:
    """What the program declares for ``roster`` with the default stack settings, in one slice (default: all)."""
    capture = run_example(roster, slice_id)
    declared = []
    for registered in capture.resources:
        wire = capture.wire.get((registered.type, registered.name), {})
        urn = resolve(registered.resource.urn)
        declared.append(Declared(registered.type, registered.name, urn, wire, bool(registered.opts.protect)))
    return declared


def _options(protect: bool) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def _props(wire: dict[str, Any]) -> Any:
    """What pulumi-policy hands a validation: deserialized (secret strings marked) and unknown-checking."""
    return unknown_checking_proxy(secrets.deserialize_marking_secrets(copy.deepcopy(wire)))


def check_resource(policy_name: str, resource: Declared, config: dict[str, Any] | None = None) -> list[str]:
    """The messages ``policy_name``'s validator reports for one resource."""
    policy = POLICIES[policy_name]
    assert isinstance(policy, ResourceValidationPolicy)
    args = ResourceValidationArgs(
        resource.type, _props(resource.wire), resource.urn, resource.name, _options(resource.protect), None, config
    )
    messages: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        messages.append(message)

    policy.validate(args, report)
    return messages


def check_stack(
    policy_name: str, resources: list[Declared], config: dict[str, Any] | None = None
) -> list[tuple[str | None, str]]:
    """The (URN, message) pairs ``policy_name``'s validator reports for a whole stack."""
    policy = POLICIES[policy_name]
    assert isinstance(policy, StackValidationPolicy)
    stack = [
        PolicyResource(r.type, _props(r.wire), r.urn, r.name, _options(r.protect), None, None, [], {})
        for r in resources
    ]
    violations: list[tuple[str | None, str]] = []

    def report(message: str, urn: str | None = None) -> None:
        violations.append((urn, message))

    policy.validate(StackValidationArgs(stack, config), report)
    return violations


def check_all(resources: list[Declared]) -> Iterator[tuple[str, str]]:
    """Every (policy, message) the whole pack reports for a stack."""
    for name, policy in POLICIES.items():
        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                yield from ((name, m) for m in check_resource(name, resource))
        else:
            yield from ((name, m) for _, m in check_stack(name, resources))


def find(resources: list[Declared], type_: str, k8s_name: str, namespace: str | None = None) -> Declared:
    matches = [
        r
        for r in resources
        if r.type == type_ and r.k8s_name == k8s_name and (namespace is None or r.namespace == namespace)
    ]
    assert len(matches) == 1, (type_, k8s_name, namespace, len(matches))
    return matches[0]


def swap(resources: list[Declared], old: Declared, new: Declared | None) -> list[Declared]:
    """The stack with ``old`` replaced by ``new`` (or removed)."""
    return [r for r in resources if r is not old] + ([new] if new is not None else [])


_KINDS = {
    "kubernetes:core/v1:Pod": ("v1", "Pod"),
    "kubernetes:apps/v1:Deployment": ("apps/v1", "Deployment"),
    "kubernetes:apps/v1:StatefulSet": ("apps/v1", "StatefulSet"),
    "kubernetes:apps/v1:DaemonSet": ("apps/v1", "DaemonSet"),
    "kubernetes:apps/v1:ReplicaSet": ("apps/v1", "ReplicaSet"),
    "kubernetes:batch/v1:Job": ("batch/v1", "Job"),
    "kubernetes:batch/v1:CronJob": ("batch/v1", "CronJob"),
}


def as_workload(statefulset: Declared, type_: str) -> Declared:
    """The sandbox StatefulSet's pod, declared as another workload kind (a Pod, a Deployment, a CronJob...)."""
    api_version, kind = _KINDS[type_]
    wire = copy.deepcopy(statefulset.wire)
    template, selector = wire["spec"]["template"], wire["spec"]["selector"]
    job_template = {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}
    spec: dict[str, Any] = {
        "Pod": template["spec"],
        "Deployment": {"replicas": 1, "selector": selector, "template": template},
        "StatefulSet": wire["spec"],
        "DaemonSet": {"selector": selector, "template": template},
        "ReplicaSet": {"replicas": 1, "selector": selector, "template": template},
        "Job": {"template": job_template},
        "CronJob": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": job_template}}},
    }[kind]
    metadata = {**wire["metadata"], "labels": template["metadata"]["labels"]} if kind == "Pod" else wire["metadata"]
    wire = {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}
    return Declared(type_, statefulset.name, statefulset.urn.replace(statefulset.type, type_), wire)
