"""A client's routing: how the ingress gateway reaches its sandboxes, and who else may.

Renders the routing part of a client's plan (:mod:`sandbox_infra.routing` computes it): PeerAuthentication
STRICT for the namespace, an AuthorizationPolicy that lets only the ingress gateway and the platform
reach code-server, the client's VirtualService (one route per active sandbox, rendered from its ids), and the
NetworkPolicy that admits the gateway to the sandbox pods (the namespace's own policies admit only the platform).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.charts import GATEWAY_NAMESPACE, GATEWAY_SELECTOR
from sandbox_infra.plan import TenantPlan
from sandbox_infra.routing import AMBIENT_PROBE_SOURCE, CODE_SERVER_PORT, HBONE_PORT
from sandbox_infra.services import NAMESPACE_NAME_LABEL, declare_object


@dataclass(frozen=True)
class ClientRoutingArgs:
    """Inputs of :class:`ClientRouting`."""

    plan: TenantPlan
    """The client's namespace and its routing objects."""
    depends_on: list[pulumi.Resource]
    """Its ClientTenant (the namespace) and, in the single-stack layout, the platform (the CRDs)."""


class ClientRouting(pulumi.ComponentResource):
    """Istio routing and access for one client's sandboxes, and the gateway's way in."""

    def __init__(self, name: str, args: ClientRoutingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:mesh:ClientRouting", name, None, opts)
        plan = args.plan
        labels = naming.labels(name="client-routing", instance=plan.namespace, component="mesh", client=plan.client_id)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        assert plan.mesh is not None, "build_plan plans every tenant's mesh"
        for obj in plan.mesh.objects():
            declare_object(name, obj, labels, child)
        gateway: k8s.networking.v1.NetworkPolicyPeerArgsDict = {
            "namespace_selector": {"match_labels": {NAMESPACE_NAME_LABEL: GATEWAY_NAMESPACE}},
            "pod_selector": {"match_labels": dict(GATEWAY_SELECTOR)},
        }
        spec: k8s.networking.v1.NetworkPolicySpecArgsDict = {
            "pod_selector": {"match_labels": naming.SANDBOX_POD_SELECTOR},
            "policy_types": ["Ingress"],
            "ingress": [
                {
                    # `from_`: the SDK's name for the API's `from` (a Python keyword).
                    "from_": [gateway],
                    "ports": [{"protocol": "TCP", "port": CODE_SERVER_PORT}, {"protocol": "TCP", "port": HBONE_PORT}],
                },
                # Ambient mode sends the kubelet's probes from this link-local address.
                {
                    "from_": [{"ip_block": {"cidr": AMBIENT_PROBE_SOURCE}}],
                    "ports": [{"protocol": "TCP", "port": CODE_SERVER_PORT}],
                },
            ],
        }
        metadata: k8s.meta.v1.ObjectMetaArgsDict = {
            "name": "allow-ingress-gateway",
            "namespace": plan.namespace,
            "labels": labels,
            "annotations": naming.object_annotations(force=True),
        }
        k8s.networking.v1.NetworkPolicy(f"{name}-allow-ingress-gateway", metadata=metadata, spec=spec, opts=child)
        self.routes = len(plan.mesh.active)
        self.register_outputs({"routes": self.routes})
