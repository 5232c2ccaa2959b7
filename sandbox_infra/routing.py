"""How requests reach a sandbox's code-server, as plain data: Istio objects and the NetworkPolicy that
admits the ingress gateway.

A request for ``sandbox.platform.internal`` (the ``sandboxHost`` setting) reaches the ingress gateway, which
routes it by two headers, ``freelancer-id`` and ``client-id``, to that sandbox's Service on code-server's
port. The design (section 8.1) matches ``freelancer-id`` alone; a freelancer who works for two clients has
two sandboxes, so the freelancer's id alone cannot tell which one is meant, and a route matched on it
alone could lead into the other client's namespace. Only active sandboxes have a route: a suspended
one has no pod to answer, an archived one is gone.

One VirtualService per client, not per sandbox. At 1,000 sandboxes that is one object per client instead
of 1,000 objects: the Pulumi engine pays about 18 ms per resource in every preview of a stack
(docs/benchmarks.md), istiod merges far fewer objects bound to the same host, and a client's routes live
in its own namespace and stack, where they cannot point into another client's namespace (a policy checks
it). A change to one sandbox updates its client's VirtualService, in the one stack that change touches
anyway. Size: about 300 bytes a route, so a client would need about 4,000 active sandboxes before the
object neared etcd's 1.5 MiB limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sandbox_infra import naming
from sandbox_infra.charts import (
    GATEWAY_NAMESPACE,
    GATEWAY_RELEASE,
    GATEWAY_SELECTOR,
    HARBOR_NAMESPACE,
    MESH_TRUST_DOMAIN,
)

FREELANCER_HEADER = "freelancer-id"
CLIENT_HEADER = "client-id"
CODE_SERVER_PORT = 8080
"""code-server's port on the sandbox Service (sandbox.py)."""
HBONE_PORT = 15008
"""Istio ambient's tunnel port: traffic from the gateway arrives at the pod on it."""
AMBIENT_PROBE_SOURCE = "169.254.7.127/32"
"""In ambient mode the kubelet's probes reach pods from this link-local address (Istio's documented SNAT)."""
GATEWAY_NAME = "platform-gateway"
GATEWAY = f"{GATEWAY_NAMESPACE}/{GATEWAY_NAME}"
SANDBOX_TLS_SECRET = "sandbox-tls"
REGISTRY_TLS_SECRET = "registry-tls"
AMBIENT_LABELS = {"istio.io/dataplane-mode": "ambient"}
"""Namespace labels that put every pod of a client namespace in the ambient mesh."""

API_VERSION_NETWORKING = "networking.istio.io/v1"
API_VERSION_SECURITY = "security.istio.io/v1"
API_VERSION_TELEMETRY = "telemetry.istio.io/v1"
API_VERSION_MONITORING = "monitoring.coreos.com/v1"


@dataclass(frozen=True)
class ObjectPlan:
    """One custom object (an Istio or Prometheus-operator kind) as it will be declared."""

    api_version: str
    kind: str
    name: str
    namespace: str
    spec: dict[str, Any]

    @property
    def logical_name(self) -> str:
        """Suffix of the Pulumi logical name (with the component's name in front)."""
        return f"{self.kind.lower()}-{self.name}"


def sandbox_service_host(freelancer_id: UUID, namespace: str) -> str:
    return f"{naming.sandbox(freelancer_id)}.{namespace}.svc.cluster.local"


@dataclass(frozen=True)
class ClientMeshPlan:
    """A client's mesh objects, kept as the ids they are made of (cheap to build and to compare at 10,000
    sandboxes); :meth:`objects` renders them."""

    client_id: UUID
    namespace: str
    host: str
    platform_namespace: str
    active: tuple[UUID, ...]
    """Freelancers of its active sandboxes, in plan order: one route each."""

    def objects(self) -> tuple[ObjectPlan, ...]:
        """mTLS, who may connect, and (when it has active sandboxes) the routes."""
        objects = [peer_authentication(self.namespace), authorization_policy(self.namespace, self.platform_namespace)]
        if self.active:  # a VirtualService without routes is refused by Istio's validation
            objects.append(self.virtual_service())
        return tuple(objects)

    def virtual_service(self) -> ObjectPlan:
        """One route per active sandbox, each matching both headers exactly."""
        client = str(self.client_id)
        routes = [
            {
                "name": naming.sandbox(fid),
                "match": [{"headers": {FREELANCER_HEADER: {"exact": str(fid)}, CLIENT_HEADER: {"exact": client}}}],
                "route": [
                    {
                        "destination": {
                            "host": sandbox_service_host(fid, self.namespace),
                            "port": {"number": CODE_SERVER_PORT},
                        }
                    }
                ],
            }
            for fid in self.active
        ]
        spec = {"hosts": [self.host], "gateways": [GATEWAY], "exportTo": [GATEWAY_NAMESPACE], "http": routes}
        return ObjectPlan(API_VERSION_NETWORKING, "VirtualService", "sandboxes", self.namespace, spec)


def peer_authentication(namespace: str) -> ObjectPlan:
    """Mutual TLS required for every workload of the namespace (ztunnel refuses plain text)."""
    return ObjectPlan(API_VERSION_SECURITY, "PeerAuthentication", "default", namespace, {"mtls": {"mode": "STRICT"}})


def authorization_policy(namespace: str, platform_namespace: str) -> ObjectPlan:
    """Only the ingress gateway (by its mesh identity) and the platform reach code-server."""
    gateway_principal = f"{MESH_TRUST_DOMAIN}/ns/{GATEWAY_NAMESPACE}/sa/{GATEWAY_RELEASE}"
    spec = {
        "selector": {"matchLabels": dict(naming.SANDBOX_POD_SELECTOR)},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": [gateway_principal]}}],
                "to": [{"operation": {"ports": [str(CODE_SERVER_PORT)]}}],
            },
            {"from": [{"source": {"namespaces": [platform_namespace]}}]},
        ],
    }
    return ObjectPlan(API_VERSION_SECURITY, "AuthorizationPolicy", "sandbox-access", namespace, spec)


def gateway(*, sandbox_host: str, registry_host: str) -> ObjectPlan:
    """The one Gateway of both platform hosts: TLS ends at the gateway (certificates in its namespace).

    It is the platform's, not each client's: one host on one port has one listener, and Istio reports
    Gateways that claim the same host and port as conflicts."""
    servers = [
        {
            "port": {"number": 443, "name": f"https-{name}", "protocol": "HTTPS"},
            "hosts": [host],
            "tls": {"mode": "SIMPLE", "credentialName": secret},
        }
        for name, host, secret in (
            ("sandboxes", sandbox_host, SANDBOX_TLS_SECRET),
            ("registry", registry_host, REGISTRY_TLS_SECRET),
        )
    ]
    spec = {"selector": dict(GATEWAY_SELECTOR), "servers": servers}
    return ObjectPlan(API_VERSION_NETWORKING, "Gateway", GATEWAY_NAME, GATEWAY_NAMESPACE, spec)


def registry_route(registry_host: str) -> ObjectPlan:
    """Harbor behind the gateway: every path of the registry host to Harbor's entry Service."""
    spec = {
        "hosts": [registry_host],
        "gateways": [GATEWAY],
        "exportTo": [GATEWAY_NAMESPACE],
        "http": [
            {
                "route": [
                    {"destination": {"host": f"harbor.{HARBOR_NAMESPACE}.svc.cluster.local", "port": {"number": 80}}}
                ]
            }
        ],
    }
    return ObjectPlan(API_VERSION_NETWORKING, "VirtualService", "registry", HARBOR_NAMESPACE, spec)


def mesh_tracing(namespace: str) -> ObjectPlan:
    """Mesh-wide tracing to Tempo (istiod's ``tempo`` extension provider), 1 % of requests."""
    spec = {"tracing": [{"providers": [{"name": "tempo"}], "randomSamplingPercentage": 1.0}]}
    return ObjectPlan(API_VERSION_TELEMETRY, "Telemetry", "mesh-default", namespace, spec)
