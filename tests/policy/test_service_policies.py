"""The services' policies on what the program declares for the example roster: pinned charts from allowed
repositories, every client routed and monitored, no route into a client from anywhere else, and the one
namespace exempt from ``restricted``. Each rule passes the example and fails it broken one way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.policy.harness import Declared, as_workload, check_all, check_resource, find, swap
from tests.policy.test_policies import ACME, ADA, GLOBEX, GRACE, INITECH, STS, messages, ns

CHART_POLICY = "kubernetes-helm-v4-chart-pinned-allowed-repository"
CLIENT_SERVICES = "kubernetes-platform-v1-client-routing-and-monitoring"
ROUTES = "kubernetes-networking-istio-v1-virtualservice-tenant-routes"
SECURITY = "kubernetes-core-v1-pod-restricted-security-context"
CHART = "kubernetes:helm.sh/v4:Chart"
VS = "kubernetes:networking.istio.io/v1:VirtualService"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
PEER = "kubernetes:security.istio.io/v1:PeerAuthentication"


def _chart(stack: list[Declared], release: str) -> tuple[list[Declared], Declared]:
    old = next(r for r in stack if r.type == CHART and r.wire.get("name") == release)
    new = old.edited()
    return swap(stack, old, new), new


def chart_range(stack: list[Declared]) -> list[Declared]:
    stack, chart = _chart(stack, "loki")
    chart.wire["version"] = "^18.11.0"
    return stack


def chart_from_elsewhere(stack: list[Declared]) -> list[Declared]:
    stack, chart = _chart(stack, "tempo")
    chart.wire["repositoryOpts"]["repo"] = "https://charts.example.com"
    return stack


def no_alert_rules(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, RULE, "sandbox-alerts", ns(GLOBEX)), None)


def no_peer_authentication(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, PEER, "default", ns(INITECH)), None)


def _acme_routes(stack: list[Declared]) -> tuple[list[Declared], Declared]:
    old = find(stack, VS, "sandboxes", ns(ACME))
    new = old.edited()
    return swap(stack, old, new), new


def route_on_another_clients_header(stack: list[Declared]) -> list[Declared]:
    stack, service = _acme_routes(stack)
    route = next(r for r in service.wire["spec"]["http"] if r["name"] == f"sandbox-{GRACE}")
    route["match"][0]["headers"]["client-id"]["exact"] = GLOBEX
    return stack


def route_without_headers(stack: list[Declared]) -> list[Declared]:
    stack, service = _acme_routes(stack)
    del service.wire["spec"]["http"][0]["match"]
    return stack


def route_into_another_namespace(stack: list[Declared]) -> list[Declared]:
    """Acme's VirtualService hands Ada's Acme requests to her Globex sandbox."""
    stack, service = _acme_routes(stack)
    route = next(r for r in service.wire["spec"]["http"] if r["name"] == f"sandbox-{ADA}")
    route["route"][0]["destination"]["host"] = f"sandbox-{ADA}.{ns(GLOBEX)}.svc.cluster.local"
    return stack


def route_to_another_sandbox(stack: list[Declared]) -> list[Declared]:
    stack, service = _acme_routes(stack)
    route = next(r for r in service.wire["spec"]["http"] if r["name"] == f"sandbox-{GRACE}")
    route["match"][0]["headers"]["freelancer-id"]["exact"] = ADA
    return stack


def _node_agent(stack: list[Declared], namespace: str, *, net_admin: bool = True) -> Declared:
    """A pod like a node agent's (host network, NET_ADMIN), made from the sandbox pod, in ``namespace``."""
    agent = as_workload(find(stack, STS, f"sandbox-{GRACE}", ns(ACME)), "kubernetes:core/v1:Pod")
    agent.pod_spec()["hostNetwork"] = True
    if net_admin:
        agent.container("gemini-cli")["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    agent.wire["metadata"] = {"name": "node-agent", "namespace": namespace, "labels": {"app": "node-agent"}}
    return Declared(agent.type, "node-agent", agent.urn.replace(agent.name, "node-agent"), agent.wire)


def privileged_outside_istio(stack: list[Declared]) -> list[Declared]:
    return [*stack, _node_agent(stack, "monitoring", net_admin=False)]


Breakage = Callable[[list[Declared]], list[Declared]]
FAILING: list[tuple[str, Breakage, str]] = [
    (CHART_POLICY, chart_range, "Helm release loki: version '^18.11.0' is not an exact version"),
    (CHART_POLICY, chart_from_elsewhere, "Helm release tempo: repository 'https://charts.example.com' is not allowed"),
    (CLIENT_SERVICES, no_alert_rules, f"client namespace {ns(GLOBEX)} has no a PrometheusRule"),
    (CLIENT_SERVICES, no_peer_authentication, f"client namespace {ns(INITECH)} has no a PeerAuthentication"),
    (ROUTES, route_on_another_clients_header, f"does not require client-id: {ACME} (has '{GLOBEX}')"),
    (ROUTES, route_without_headers, "matches every request (no client-id and freelancer-id headers)"),
    (ROUTES, route_into_another_namespace, f"leads into {ns(GLOBEX)} from another namespace"),
    (ROUTES, route_to_another_sandbox, f"freelancer-id '{ADA}' is not the sandbox it leads to"),
    (SECURITY, privileged_outside_istio, "the pod sets hostNetwork: true"),
]


@pytest.mark.parametrize(("policy", "breakage", "expected"), FAILING, ids=[b.__name__ for _, b, _ in FAILING])
def test_broken_stack_fails_only_its_rule(
    policy: str, breakage: Breakage, expected: str, stack: list[Declared]
) -> None:
    broken = breakage(stack)
    found = messages(policy, broken)
    assert len(found) == 1, found
    assert expected in found[0] and "Fix: " in found[0]
    overlaps = {"no_peer_authentication": set[str]()}
    assert {name for name, _ in check_all(broken)} == {policy} | overlaps.get(breakage.__name__, set())


def test_istio_node_agents_may_use_the_host_but_nothing_else_may(stack: list[Declared]) -> None:
    """A pod like ztunnel's (host network, NET_ADMIN) passes in istio-system only."""
    assert messages(SECURITY, [*stack, _node_agent(stack, "istio-system")]) == []
    config: dict[str, Any] = {"privilegedNamespaces": [ns(ACME)]}  # a client namespace is never exempt
    assert check_resource(SECURITY, _node_agent(stack, ns(ACME)), config)


def test_an_archived_only_client_needs_no_virtual_service(stack: list[Declared]) -> None:
    """Routes are required only where there are active sandboxes; mTLS, access and rules always."""
    without = swap(stack, find(stack, VS, "sandboxes", ns(INITECH)), None)
    [message] = messages(CLIENT_SERVICES, without)
    assert "a VirtualService (it has 2 active sandboxes)" in message
