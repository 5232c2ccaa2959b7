"""Rules for the platform's services: pinned charts from known repositories, every client routed and
monitored, and no route that leads into a client's sandboxes from anywhere but that client.

A route is the pair (match, destination) of a VirtualService's ``http`` entry. Into a client namespace,
a route is acceptable only when it is declared in that namespace, and it requires that client's
``client-id`` header and the ``freelancer-id`` of the sandbox it leads to: a VirtualService elsewhere, or
a route on another client's header, could hand one client's requests to another client's code-server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sandbox_infra.naming import CLIENT_LABEL, CLIENT_NAMESPACE_PREFIX, SANDBOX_APP
from sandbox_policies.model import (
    SANDBOX,
    UNKNOWN,
    Resource,
    Violation,
    as_dict,
    as_list,
    as_str,
    by_namespace,
    get,
    is_client_namespace,
)

CHART = "kubernetes:helm.sh/v4:Chart"
VIRTUAL_SERVICE = "kubernetes:networking.istio.io/v1:VirtualService"
PEER_AUTHENTICATION = "kubernetes:security.istio.io/v1:PeerAuthentication"
AUTHORIZATION_POLICY = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
FREELANCER_HEADER = "freelancer-id"
CLIENT_HEADER = "client-id"
_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")

FIX_CHART = (
    "Fix: pin the chart in sandbox_infra/charts.py to an exact version (1.2.3, no range) from one of the "
    "allowed repositories (policy config allowedChartRepositories)."
)
FIX_ROUTES = (
    "Fix: route to a client's sandboxes only from a VirtualService in that client's namespace, each route "
    "matching that client's client-id and the sandbox's freelancer-id exactly, as ClientRouting does."
)


def check_chart(resource: Resource, allowed: Sequence[str]) -> list[str]:
    """A Helm release names an exact chart version from an allowed repository."""
    props = resource.props
    release = as_str(props.get("name")) or resource.name
    problems = []
    version = props.get("version")
    if version is not UNKNOWN and not (isinstance(version, str) and _EXACT_VERSION.match(version)):
        problems.append(f"version {version!r} is not an exact version")
    repository = get(props, "repositoryOpts", "repo")
    chart = props.get("chart")
    source = repository if isinstance(repository, str) else chart
    if source is not UNKNOWN and not (isinstance(source, str) and source.rstrip("/") in allowed):
        problems.append(f"repository {source!r} is not allowed ({', '.join(allowed)})")
    if isinstance(chart, str) and re.match(r"^[a-z]+://", chart) and chart.rstrip("/") not in allowed:
        problems.append(f"chart {chart!r} is fetched from a location that is not an allowed repository")
    return [f"Helm release {release}: {'; '.join(problems)}. {FIX_CHART}"] if problems else []


def _active_sandboxes(resources: list[Resource]) -> dict[str, set[str]]:
    """Client namespace -> freelancer ids of its Sandbox objects in state active."""
    active: dict[str, set[str]] = {}
    for namespace, sandboxes in by_namespace(resources, SANDBOX).items():
        for sandbox in sandboxes:
            if get(sandbox.spec, "state") == "active" and isinstance(get(sandbox.spec, "freelancerId"), str):
                active.setdefault(namespace, set()).add(str(get(sandbox.spec, "freelancerId")))
    return active


def check_client_services(resources: list[Resource]) -> list[Violation]:
    """Every client namespace has mTLS (PeerAuthentication), access control (AuthorizationPolicy) and its
    alert rules (PrometheusRule), and a VirtualService once it has an active sandbox."""
    kinds = {
        "a PeerAuthentication": by_namespace(resources, PEER_AUTHENTICATION),
        "an AuthorizationPolicy": by_namespace(resources, AUTHORIZATION_POLICY),
        "a PrometheusRule": by_namespace(resources, PROMETHEUS_RULE),
    }
    routes = by_namespace(resources, VIRTUAL_SERVICE)
    active = _active_sandboxes(resources)
    violations = []
    for namespace in filter(is_client_namespace, resources):
        name = namespace.k8s_name
        if name is None:
            continue
        missing = [kind for kind, present in kinds.items() if name not in present]
        if active.get(name) and name not in routes:
            missing.append(f"a VirtualService (it has {len(active[name])} active sandboxes)")
        if missing:
            violations.append(
                Violation(
                    namespace.urn,
                    f"client namespace {name} has no {', no '.join(missing)}. Fix: declare each client through "
                    "ClientRouting and ClientMonitoring (program.py does for every tenant of the roster).",
                )
            )
    return violations


def _destination_namespace(host: str, own: str) -> str | None:
    """The namespace a destination host names (``svc``, ``svc.ns``, ``svc.ns.svc[.cluster.local]``)."""
    parts = host.split(".")
    if len(parts) == 1:
        return own
    return parts[1] if len(parts) >= 2 else None


def _exact(match: Any, header: str) -> str | None:
    return as_str(get(as_dict(match), "headers", header, "exact"))


def _route_problems(service: Resource, clients: dict[str, str]) -> list[str]:
    own = service.namespace or ""
    problems = []
    for i, route in enumerate(as_list(service.spec.get("http"))):
        if route is UNKNOWN:
            continue
        for j, target in enumerate(as_list(as_dict(route).get("route"))):
            host = as_str(get(as_dict(target), "destination", "host"))
            if host is None:
                continue
            namespace = _destination_namespace(host, own)
            if namespace is None or not namespace.startswith(CLIENT_NAMESPACE_PREFIX):
                continue
            where = f"http[{i}].route[{j}] to {host}"
            if namespace != own:
                problems.append(f"{where} leads into {namespace} from another namespace")
                continue
            client = clients.get(namespace, namespace.removeprefix(CLIENT_NAMESPACE_PREFIX))
            matches = as_list(as_dict(route).get("match"))
            if not matches:
                problems.append(f"{where} matches every request (no client-id and freelancer-id headers)")
            service_name = host.split(".")[0]
            for k, match in enumerate(matches):
                if match is UNKNOWN:
                    continue
                client_id, freelancer = _exact(match, CLIENT_HEADER), _exact(match, FREELANCER_HEADER)
                if client_id != client:
                    problems.append(
                        f"{where}: match[{k}] does not require {CLIENT_HEADER}: {client} (has {client_id!r})"
                    )
                if freelancer is None or service_name != f"{SANDBOX_APP}-{freelancer}":
                    problems.append(
                        f"{where}: match[{k}] {FREELANCER_HEADER} {freelancer!r} is not the sandbox it leads to"
                    )
    return problems


def check_routes(resources: list[Resource]) -> list[Violation]:
    """No route reaches a client's sandboxes except from its own VirtualService, on its own headers."""
    clients = {
        ns.k8s_name: str(ns.labels.get(CLIENT_LABEL, ns.k8s_name.removeprefix(CLIENT_NAMESPACE_PREFIX)))
        for ns in filter(is_client_namespace, resources)
        if ns.k8s_name
    }
    violations = []
    for service in (r for r in resources if r.type == VIRTUAL_SERVICE):
        problems = _route_problems(service, clients)
        if problems:
            violations.append(Violation(service.urn, f"{service.describe()}: {'; '.join(problems)}. {FIX_ROUTES}"))
    return violations
