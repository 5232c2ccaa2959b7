"""Stack rule for NetworkPolicies: a client's pods are reachable only from its own namespace and the
platform, and no pod can reach the cloud metadata address (which hands out node credentials).

Ingress is checked in client namespaces: a namespaceSelector is evaluated against every client namespace
in the stack (with the ``kubernetes.io/metadata.name`` label the API server adds), and an ipBlock must not
admit the pod network. Egress is checked everywhere: an ipBlock must carve the metadata address out with
``except``, and a rule without ``to`` reaches every address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from sandbox_infra.naming import CLIENT_NAMESPACE_PREFIX
from sandbox_policies.config import IPNetwork
from sandbox_policies.model import (
    NAMESPACE_NAME_LABEL,
    NETWORK_POLICY,
    UNKNOWN,
    Resource,
    Violation,
    as_dict,
    as_list,
    is_client_namespace,
)

FIX_NETWORK = (
    "Fix: admit ingress only from the namespace's own pods and the platform namespace (namespaceSelector on "
    "kubernetes.io/metadata.name), and list the metadata range (169.254.0.0/16) under 'except' of every egress "
    "ipBlock, as ClientTenant's sandbox-isolation policy does."
)


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions, ANDed; empty selects all)."""
    for key, value in as_dict(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for item in as_list(selector.get("matchExpressions")):
        expression = as_dict(item)
        label, operator = str(expression.get("key")), expression.get("operator")
        values = as_list(expression.get("values"))
        present = label in labels
        if operator == "In" and not (present and labels[label] in values):
            return False
        if operator == "NotIn" and present and labels[label] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _network(text: object) -> IPNetwork | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _minus(network: IPNetwork, excluded: IPNetwork) -> list[IPNetwork]:
    """What is left of ``network`` without ``excluded``."""
    if isinstance(network, ipaddress.IPv4Network) and isinstance(excluded, ipaddress.IPv4Network):
        if network.subnet_of(excluded):
            return []
        if excluded.subnet_of(network):
            return list(network.address_exclude(excluded))
    if isinstance(network, ipaddress.IPv6Network) and isinstance(excluded, ipaddress.IPv6Network):
        if network.subnet_of(excluded):
            return []
        if excluded.subnet_of(network):
            return list(network.address_exclude(excluded))
    return [network]


def _overlap(a: IPNetwork, b: IPNetwork) -> IPNetwork | None:
    """The intersection of two CIDR blocks (one contains the other, or they are disjoint)."""
    if a.version != b.version or not a.overlaps(b):
        return None
    return a if a.prefixlen >= b.prefixlen else b


def admitted(ip_block: Mapping[str, Any], targets: list[IPNetwork]) -> list[IPNetwork]:
    """The targets some address of which an ipBlock (``cidr`` minus ``except``) admits."""
    cidr = _network(ip_block.get("cidr"))
    if cidr is None:
        return []
    excepts = [n for n in map(_network, as_list(ip_block.get("except"))) if n is not None]
    result = []
    for target in targets:
        overlap = _overlap(cidr, target)
        if overlap is None:
            continue
        remaining = [overlap]
        for excluded in excepts:
            remaining = [piece for part in remaining for piece in _minus(part, excluded)]
        if remaining:
            result.append(target)
    return result


def _ingress_problems(
    policy: Resource, clients: Mapping[str, Mapping[str, Any]], pod_networks: list[IPNetwork]
) -> list[str]:
    own = policy.namespace
    problems = []
    for i, rule in enumerate(as_list(policy.spec.get("ingress"))):
        peers = as_dict(rule).get("from") if rule is not UNKNOWN else UNKNOWN
        if peers is UNKNOWN:
            continue
        if not as_list(peers):
            problems.append(f"ingress[{i}] has no 'from', so it admits every namespace, other clients' included")
            continue
        for j, peer in enumerate(as_list(peers)):
            where = f"ingress[{i}].from[{j}]"
            selector, ip_block = as_dict(peer).get("namespaceSelector"), as_dict(peer).get("ipBlock")
            if isinstance(selector, dict):
                if not selector.get("matchLabels") and not selector.get("matchExpressions"):
                    problems.append(f"{where}.namespaceSelector is empty, which selects every namespace")
                    continue
                others = sorted(n for n, labels in clients.items() if n != own and selector_matches(selector, labels))
                if others:
                    problems.append(f"{where}.namespaceSelector selects other clients' namespaces {', '.join(others)}")
            elif isinstance(ip_block, dict):
                reached = admitted(ip_block, pod_networks)
                if reached:
                    ranges = ", ".join(map(str, reached))
                    problems.append(f"{where}.ipBlock {ip_block.get('cidr')} admits the pod network ({ranges})")
    return problems


def _egress_problems(policy: Resource, metadata: list[IPNetwork]) -> list[str]:
    problems = []
    shown = ", ".join(str(m) for m in metadata)
    for i, rule in enumerate(as_list(policy.spec.get("egress"))):
        peers = as_dict(rule).get("to") if rule is not UNKNOWN else UNKNOWN
        if peers is UNKNOWN:
            continue
        if not as_list(peers):
            problems.append(f"egress[{i}] has no 'to', so it allows every address, the metadata address ({shown}) too")
            continue
        for j, peer in enumerate(as_list(peers)):
            ip_block = as_dict(peer).get("ipBlock")
            if isinstance(ip_block, dict):
                reached = admitted(ip_block, metadata)
                if reached:
                    problems.append(
                        f"egress[{i}].to[{j}].ipBlock {ip_block.get('cidr')} allows the metadata address "
                        f"{', '.join(str(m) for m in reached)}"
                    )
    return problems


def check_network_isolation(
    resources: list[Resource], *, metadata: list[IPNetwork], pod_networks: list[IPNetwork]
) -> list[Violation]:
    clients: dict[str, dict[str, Any]] = {}
    for client in filter(is_client_namespace, resources):
        if client.k8s_name:
            clients[client.k8s_name] = {**client.labels, NAMESPACE_NAME_LABEL: client.k8s_name}
    violations = []
    for policy in (r for r in resources if r.type == NETWORK_POLICY):
        problems = []
        namespace = policy.namespace or ""
        if namespace in clients or namespace.startswith(CLIENT_NAMESPACE_PREFIX):
            problems += _ingress_problems(policy, clients, pod_networks)
        problems += _egress_problems(policy, metadata)
        if problems:
            violations.append(Violation(policy.urn, f"{policy.describe()}: {'; '.join(problems)}. {FIX_NETWORK}"))
    return violations
