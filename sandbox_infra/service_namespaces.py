"""The platform services' namespaces and who may talk to whom, as plain data.

Each namespace gets, from the component that declares it (``services.PlatformNamespace``): Pod Security
labels pinned to a version, a default-deny NetworkPolicy for both directions, DNS, traffic among its own
pods, and then only the allows below. Every namespace is ``restricted`` except ``istio-system``, where
Istio's CNI node agent and ztunnel program the nodes' pod networking (host network, NET_ADMIN) and nothing
else runs.

No rule here admits traffic from a client namespace into a platform namespace: sandboxes reach only
``platform-system`` (the client namespaces' own policies) and the internet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox_infra.charts import (
    GATEWAY_NAMESPACE,
    GATEWAY_SELECTOR,
    HARBOR_NAMESPACE,
    ISTIO_NAMESPACE,
    MONITORING_NAMESPACE,
    TEMPO_OTLP_PORT,
)
from sandbox_infra.routing import CODE_SERVER_PORT, HBONE_PORT
from sandbox_infra.settings import StackSettings

LINK_LOCAL = "169.254.0.0/16"
"""Includes the cloud metadata address: no platform namespace may reach it either."""


@dataclass(frozen=True)
class Peer:
    """One side of a NetworkPolicy rule: a namespace (optionally some of its pods), every client namespace,
    every namespace, or an address range."""

    namespace: str | None = None
    pods: tuple[tuple[str, str], ...] = ()
    client_namespaces: bool = False
    any_namespace: bool = False
    cidr: str | None = None
    excepted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Allow:
    """Traffic to or from ``peers`` on ``ports`` (TCP; empty: every port)."""

    peers: tuple[Peer, ...]
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class NamespacePlan:
    name: str
    pod_security: str
    """``restricted``, or ``privileged`` for Istio's node agents."""
    ingress: tuple[Allow, ...] = field(default_factory=tuple)
    egress: tuple[Allow, ...] = field(default_factory=tuple)


ANY_NAMESPACE = Peer(any_namespace=True)
ANYWHERE = Peer(cidr="0.0.0.0/0", excepted=(LINK_LOCAL,))
"""Any address but link-local: the API server and the nodes (whose addresses no policy can know) included."""


def platform_namespaces(settings: StackSettings) -> tuple[NamespacePlan, ...]:
    internet = Peer(cidr="0.0.0.0/0", excepted=tuple(settings.egress_denied_cidrs))
    monitoring = Peer(namespace=MONITORING_NAMESPACE)
    return (
        NamespacePlan(
            ISTIO_NAMESPACE,
            "privileged",
            # istiod (xDS, the sidecar-injection and validation webhooks the API server calls) and ztunnel.
            ingress=(Allow((ANY_NAMESPACE, ANYWHERE), (15010, 15012, 15014, 15017, 15020, 15021)),),
            # ztunnel carries every mesh connection; istiod watches the API server.
            egress=(Allow((ANY_NAMESPACE, ANYWHERE)),),
        ),
        NamespacePlan(
            GATEWAY_NAMESPACE,
            "restricted",
            ingress=(
                Allow((ANYWHERE,), (80, 443, 8080, 8443)),  # the load balancer's clients
                Allow((monitoring,), (15020, 15090)),  # metrics
            ),
            egress=(
                Allow((Peer(client_namespaces=True),), (CODE_SERVER_PORT, HBONE_PORT)),
                Allow((Peer(namespace=HARBOR_NAMESPACE),), (8080,)),
                Allow((Peer(namespace=ISTIO_NAMESPACE),), (15012, HBONE_PORT)),
                Allow((monitoring,), (TEMPO_OTLP_PORT,)),
            ),
        ),
        NamespacePlan(
            MONITORING_NAMESPACE,
            "restricted",
            ingress=(
                # Traces from the mesh and the platform.
                Allow(
                    (
                        Peer(namespace=ISTIO_NAMESPACE),
                        Peer(namespace=GATEWAY_NAMESPACE),
                        Peer(namespace=settings.platform_namespace),
                    ),
                    (TEMPO_OTLP_PORT, 4318),
                ),
                Allow((ANYWHERE,), (10250,)),  # the operator's admission webhook, called by the API server
            ),
            # Scrape targets in every namespace and on the nodes, the API server, Alertmanager's receivers.
            egress=(Allow((ANY_NAMESPACE, ANYWHERE)),),
        ),
        NamespacePlan(
            HARBOR_NAMESPACE,
            "restricted",
            ingress=(
                Allow((Peer(namespace=GATEWAY_NAMESPACE, pods=tuple(GATEWAY_SELECTOR.items())),), (8080,)),
                Allow((monitoring,), (8001,)),  # Harbor's metrics
            ),
            egress=(Allow((internet,), (443,)),),  # vulnerability database updates, replication
        ),
    )
