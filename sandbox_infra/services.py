"""The platform's third-party services (the mesh, monitoring, the registry), declared from the plan.

A :class:`PlatformService` declares its namespaces (each a :class:`PlatformNamespace`: Pod Security,
default-deny and the allows of :mod:`sandbox_infra.service_namespaces`), its Helm releases as pulumi-kubernetes
``helm.v4.Chart`` resources (pinned in :mod:`sandbox_infra.charts`), and its custom objects (Gateway,
ServiceMonitor...) and dashboards. A release switched off by the ``releases`` setting is simply not in the
plan; its namespace and objects still are, so a stack without the charts (the local cluster, where the
CRDs are installed by ``make cluster-up``) still has every object validated by the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.charts import ReleasePlan, SecretRef
from sandbox_infra.namespaces import declare_namespace
from sandbox_infra.plan import ServicePlan
from sandbox_infra.platform import pod_security_labels
from sandbox_infra.routing import ObjectPlan
from sandbox_infra.service_namespaces import Allow, NamespacePlan, Peer

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
"""What the Grafana sidecar (kube-prometheus-stack) looks for."""


class MissingSecretError(KeyError):
    """A release's value needs a ``platformSecrets`` key the stack does not set (settings validation first)."""


def with_secrets(values: Any, secrets: Mapping[str, pulumi.Input[str]]) -> Any:
    """``values`` with every :class:`SecretRef` replaced by its Pulumi secret (a secret Output)."""
    if isinstance(values, SecretRef):
        if values.key not in secrets:
            raise MissingSecretError(values.key)
        return pulumi.Output.secret(secrets[values.key])
    if isinstance(values, Mapping):
        return {k: with_secrets(v, secrets) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return [with_secrets(v, secrets) for v in values]
    return values


def declare_object(
    name: str,
    plan: ObjectPlan,
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """One custom object, its spec sent as written (the CRD's own camelCase fields), force-applied: the
    platform owns it outright (:func:`naming.object_annotations`). The objects of the cluster-wide platform
    namespaces are declared by every environment's platform stack on a cluster; with one field manager
    and force, the last apply wins instead of failing on the other's fields (one environment per cluster
    stays the intended layout, docs/services.md)."""
    metadata: k8s.meta.v1.ObjectMetaArgsDict = {
        "name": plan.name,
        "namespace": plan.namespace,
        "labels": labels,
        "annotations": naming.object_annotations(force=True),
    }
    return k8s.apiextensions.CustomResource(
        f"{name}-{plan.logical_name}",
        api_version=plan.api_version,
        kind=plan.kind,
        metadata=metadata,
        spec=plan.spec,
        opts=opts,
    )


def _peer(peer: Peer) -> k8s.networking.v1.NetworkPolicyPeerArgsDict:
    if peer.cidr is not None:
        return {"ip_block": {"cidr": peer.cidr, "except_": list(peer.excepted)}}
    if peer.client_namespaces:
        selector: k8s.meta.v1.LabelSelectorArgsDict = {
            "match_expressions": [{"key": naming.CLIENT_LABEL, "operator": "Exists"}]
        }
    elif peer.any_namespace:
        selector = {}
    else:
        assert peer.namespace is not None
        selector = {"match_labels": {NAMESPACE_NAME_LABEL: peer.namespace}}
    if peer.pods:
        return {"namespace_selector": selector, "pod_selector": {"match_labels": dict(peer.pods)}}
    return {"namespace_selector": selector}


def _ports(allow: Allow) -> list[k8s.networking.v1.NetworkPolicyPortArgsDict]:
    return [{"protocol": "TCP", "port": port} for port in allow.ports]


@dataclass(frozen=True)
class PlatformNamespaceArgs:
    """Inputs of :class:`PlatformNamespace`."""

    plan: NamespacePlan
    """Its Pod Security level and the traffic it admits and sends."""
    pod_security_version: str
    """Pinned Pod Security Standards version (the ``podSecurityVersion`` setting)."""


class PlatformNamespace(pulumi.ComponentResource):
    """A platform service's namespace: Pod Security labels, default-deny, DNS, its own pods, its allows."""

    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: PlatformNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:services:PlatformNamespace", name, None, opts)
        plan = args.plan
        labels = naming.labels(name="platform-namespace", instance=plan.name, component="services")
        ns_labels = {**labels, **pod_security_labels(plan.pod_security, args.pod_security_version)}
        # With its `default` ServiceAccount mounting no token, like every namespace the platform declares.
        ns = declare_namespace(name, plan.name, ns_labels, pulumi.ResourceOptions(parent=self))
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        own: k8s.networking.v1.NetworkPolicyPeerArgsDict = {"pod_selector": {}}
        dns: k8s.networking.v1.NetworkPolicyPeerArgsDict = {
            "namespace_selector": {"match_labels": {NAMESPACE_NAME_LABEL: "kube-system"}},
            "pod_selector": {"match_labels": {"k8s-app": "kube-dns"}},
        }
        policies: dict[str, k8s.networking.v1.NetworkPolicySpecArgsDict] = {
            "default-deny": {"pod_selector": {}, "policy_types": ["Ingress", "Egress"]},
            "allow-dns": {
                "pod_selector": {},
                "policy_types": ["Egress"],
                "egress": [{"to": [dns], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}],
            },
            "allow-same-namespace": {
                "pod_selector": {},
                "policy_types": ["Ingress", "Egress"],
                # `from_`: the SDK's name for the API's `from` (a Python keyword).
                "ingress": [{"from_": [own]}],
                "egress": [{"to": [own]}],
            },
        }
        if plan.ingress:
            policies["allow-ingress"] = {
                "pod_selector": {},
                "policy_types": ["Ingress"],
                "ingress": [{"from_": [_peer(p) for p in a.peers], "ports": _ports(a)} for a in plan.ingress],
            }
        if plan.egress:
            policies["allow-egress"] = {
                "pod_selector": {},
                "policy_types": ["Egress"],
                "egress": [{"to": [_peer(p) for p in a.peers], "ports": _ports(a)} for a in plan.egress],
            }
        for policy, spec in policies.items():
            metadata: k8s.meta.v1.ObjectMetaArgsDict = {
                "name": policy,
                "namespace": plan.name,
                "labels": labels,
                "annotations": naming.object_annotations(force=True),
            }
            k8s.networking.v1.NetworkPolicy(f"{name}-{policy}", metadata=metadata, spec=spec, opts=in_ns)
        self.namespace = ns.metadata.name
        self.register_outputs({"namespace": self.namespace})


@dataclass(frozen=True)
class PlatformServiceArgs:
    """Inputs of :class:`PlatformService`."""

    plan: ServicePlan
    """Its namespaces, the releases switched on, its custom objects and dashboards."""
    pod_security_version: str
    """Pinned Pod Security Standards version of its namespaces."""
    secrets: Mapping[str, pulumi.Input[str]]
    """The ``platformSecrets`` values (secret Outputs) its releases' :class:`SecretRef` leaves name."""


class PlatformService(pulumi.ComponentResource):
    """One platform service: namespaces, Helm releases (pinned), custom objects and dashboards."""

    def __init__(self, name: str, args: PlatformServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:services:PlatformService", name, None, opts)
        plan = args.plan
        labels = naming.labels(name=plan.name, instance=name, component="services")
        namespaces = [
            PlatformNamespace(
                f"{name}-{ns.name}",
                PlatformNamespaceArgs(ns, args.pod_security_version),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for ns in plan.namespaces
        ]
        previous: list[pulumi.Resource] = list(namespaces)
        for release in plan.releases:
            # In order: each release waits for the one before (Istio's CRDs, then istiod, then its agents).
            chart = self._release(name, release, args.secrets, pulumi.ResourceOptions(parent=self, depends_on=previous))
            previous = [*namespaces, chart]
        after = pulumi.ResourceOptions(parent=self, depends_on=previous)
        for obj in plan.objects:
            declare_object(name, obj, labels, after)
        for dashboard in plan.dashboards:
            metadata: k8s.meta.v1.ObjectMetaArgsDict = {
                "name": dashboard.name,
                "namespace": dashboard.namespace,
                "labels": {**labels, **DASHBOARD_LABEL},
                "annotations": naming.object_annotations(force=True),
            }
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{dashboard.name}",
                metadata=metadata,
                data={f"{dashboard.name}.json": dashboard.json},
                opts=after,
            )
        self.releases = [r.name for r in plan.releases]
        self.register_outputs({"releases": self.releases})

    @staticmethod
    def _release(
        name: str, release: ReleasePlan, secrets: Mapping[str, pulumi.Input[str]], opts: pulumi.ResourceOptions
    ) -> k8s.helm.v4.Chart:
        return k8s.helm.v4.Chart(
            f"{name}-{release.name}",
            name=release.name,
            namespace=release.namespace,
            chart=release.chart.chart,
            version=release.chart.version,
            repository_opts={"repo": release.chart.repository},
            values=with_secrets(release.values, secrets),
            opts=opts,
        )
