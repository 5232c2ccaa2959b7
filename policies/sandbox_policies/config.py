"""The pack's thresholds: one JSON-schema property per knob, with the defaults the stack is built with.

A policy's ``config_schema`` lists the knobs it reads. The engine fills in the defaults and validates a
``--policy-pack-config`` file against the schema; the parsers below fall back to the same defaults, so a
validator called directly (tests) behaves as in the engine. Override a knob per policy, e.g.::

    {"kubernetes-apps-v1-statefulset-allowed-pinned-images": {"allowedRegistries": ["registry.example/"]}}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pulumi_policy import PolicyConfigSchema

from sandbox_infra.charts import ALLOWED_REPOSITORIES, ISTIO_NAMESPACE
from sandbox_infra.naming import API_KEY_SECRET, CLIENT_NAMESPACE_PREFIX
from sandbox_infra.quantity import format_bytes, format_cpu
from sandbox_infra.settings import StackSettings
from sandbox_infra.tiers import TIERS as PROGRAM_TIERS
from sandbox_policies.quantity import QuantityError, parse_quantity

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_REGISTRIES = "allowedRegistries"
STORAGE_CLASSES = "storageClasses"
MAX_STORAGE = "maxStorage"
TIERS = "tiers"
API_KEY_SECRET_NAMES = "apiKeySecretNames"
API_KEY_PATTERNS = "apiKeyPatterns"
METADATA_CIDRS = "metadataCidrs"
POD_NETWORK_CIDRS = "podNetworkCidrs"
ALLOWED_CHART_REPOSITORIES = "allowedChartRepositories"
PRIVILEGED_NAMESPACES = "privilegedNamespaces"

_QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_BUDGET = {
    "type": "object",
    "properties": {
        "cpu": {"type": "string", "pattern": _QUANTITY_PATTERN},
        "memory": {"type": "string", "pattern": _QUANTITY_PATTERN},
    },
    "required": ["cpu", "memory"],
    "additionalProperties": False,
}


def _tier_defaults() -> dict[str, Any]:
    """The program's tier table as the pack's config: a budget per fixed tier, and whether a GPU is allowed.
    Custom sandboxes carry their own numbers in the roster (the program validates them there)."""
    table: dict[str, Any] = {}
    for tier, spec in PROGRAM_TIERS.items():
        entry: dict[str, Any] = {"gpu": spec.gpu_allowed}
        if spec.budget is not None:
            b = spec.budget
            entry["requests"] = {"cpu": format_cpu(b.requests_cpu), "memory": format_bytes(b.requests_memory)}
            entry["limits"] = {"cpu": format_cpu(b.limits_cpu), "memory": format_bytes(b.limits_memory)}
        table[tier.value] = entry
    return table


_STACK = StackSettings()
# The defaults are the stack's own (sandbox_infra/settings.py, tiers.py, naming.py): one home for each fact.
DEFAULTS: dict[str, Any] = {
    ALLOWED_REGISTRIES: list(_STACK.allowed_registries),
    STORAGE_CLASSES: sorted({_STACK.workspace_storage_class, _STACK.home_storage_class}),
    MAX_STORAGE: _STACK.max_storage,
    TIERS: _tier_defaults(),
    API_KEY_SECRET_NAMES: [API_KEY_SECRET],
    API_KEY_PATTERNS: ["api_key", "apikey", "api-key"],
    METADATA_CIDRS: ["169.254.169.254/32", "fd00:ec2::254/128"],
    POD_NETWORK_CIDRS: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"],
    ALLOWED_CHART_REPOSITORIES: list(ALLOWED_REPOSITORIES),
    # Istio's CNI node agent and ztunnel program each node's pod networking (host network, NET_ADMIN).
    PRIVILEGED_NAMESPACES: [ISTIO_NAMESPACE],
}

_PROPERTIES: dict[str, dict[str, Any]] = {
    ALLOWED_REGISTRIES: {
        **_STRINGS,
        "minItems": 1,
        "description": "Image name prefixes pods may pull from (a registry host, optionally with a path).",
    },
    STORAGE_CLASSES: {**_STRINGS, "minItems": 1, "description": "StorageClasses a PersistentVolumeClaim may use."},
    MAX_STORAGE: {
        "type": "string",
        "pattern": _QUANTITY_PATTERN,
        "description": "Largest storage request of a single PersistentVolumeClaim.",
    },
    TIERS: {
        "type": "object",
        "description": "Per-tier pod budget (requests, limits; omitted: no cap) and whether the tier may use a GPU.",
        "additionalProperties": {
            "type": "object",
            "properties": {"requests": _BUDGET, "limits": _BUDGET, "gpu": {"type": "boolean"}},
            "additionalProperties": False,
        },
    },
    API_KEY_SECRET_NAMES: {**_STRINGS, "description": "Names of Secrets that hold API keys."},
    API_KEY_PATTERNS: {
        **_STRINGS,
        "description": "A Secret key containing one of these (case-insensitive) holds an API key.",
    },
    METADATA_CIDRS: {**_STRINGS, "description": "Cloud metadata addresses no egress rule may reach."},
    POD_NETWORK_CIDRS: {
        **_STRINGS,
        "description": "Ranges other clients' pods may have; client ingress rules must not admit them.",
    },
    ALLOWED_CHART_REPOSITORIES: {
        **_STRINGS,
        "minItems": 1,
        "description": "Helm chart repositories releases may come from.",
    },
    PRIVILEGED_NAMESPACES: {
        **_STRINGS,
        "description": "Platform namespaces whose node agents may need host access (never a client namespace).",
    },
}


def schema(*keys: str) -> PolicyConfigSchema:
    """The config schema of a policy that reads ``keys``, defaults included."""
    return PolicyConfigSchema(properties={key: {**_PROPERTIES[key], "default": DEFAULTS[key]} for key in keys})


class ConfigError(ValueError):
    """A policy config value the pack cannot use."""


def _value(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    return DEFAULTS[key] if value is None else value


def _strings(config: Mapping[str, Any], key: str) -> list[str]:
    value = _value(config, key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"policy config {key}: expected a list of non-empty strings, got {value!r}")
    return [str(v) for v in value]


def allowed_registries(config: Mapping[str, Any]) -> list[str]:
    """Prefixes, each ending in ``/`` so ``registry.platform.com`` cannot match ``registry.platform.com.evil``."""
    return [r if r.endswith("/") else r + "/" for r in _strings(config, ALLOWED_REGISTRIES)]


def storage_classes(config: Mapping[str, Any]) -> list[str]:
    return _strings(config, STORAGE_CLASSES)


def max_storage(config: Mapping[str, Any]) -> tuple[Decimal, str]:
    text = _value(config, MAX_STORAGE)
    try:
        return parse_quantity(text), str(text)
    except QuantityError as exc:
        raise ConfigError(f"policy config {MAX_STORAGE}: {exc}") from exc


def api_key_secret_names(config: Mapping[str, Any]) -> list[str]:
    return _strings(config, API_KEY_SECRET_NAMES)


def api_key_patterns(config: Mapping[str, Any]) -> list[str]:
    return [p.lower() for p in _strings(config, API_KEY_PATTERNS)]


def _networks(config: Mapping[str, Any], key: str) -> list[IPNetwork]:
    try:
        return [ipaddress.ip_network(c, strict=False) for c in _strings(config, key)]
    except ValueError as exc:
        raise ConfigError(f"policy config {key}: {exc}") from exc


def metadata_cidrs(config: Mapping[str, Any]) -> list[IPNetwork]:
    return _networks(config, METADATA_CIDRS)


def pod_network_cidrs(config: Mapping[str, Any]) -> list[IPNetwork]:
    return _networks(config, POD_NETWORK_CIDRS)


def allowed_chart_repositories(config: Mapping[str, Any]) -> list[str]:
    return [r.rstrip("/") for r in _strings(config, ALLOWED_CHART_REPOSITORIES)]


def privileged_namespaces(config: Mapping[str, Any]) -> list[str]:
    """Never a client namespace, whatever the config says: a sandbox is never privileged."""
    return [n for n in _strings(config, PRIVILEGED_NAMESPACES) if not n.startswith(CLIENT_NAMESPACE_PREFIX)]


@dataclass(frozen=True)
class TierBudget:
    """A tier's pod budget (None: no cap on that side) and whether it may use a GPU."""

    requests: Mapping[str, Decimal] | None
    limits: Mapping[str, Decimal] | None
    gpu: bool


def tiers(config: Mapping[str, Any]) -> dict[str, TierBudget]:
    table = _value(config, TIERS)
    if not isinstance(table, Mapping):
        raise ConfigError(f"policy config {TIERS}: expected an object of tiers, got {table!r}")
    result: dict[str, TierBudget] = {}
    for tier, entry in table.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"policy config {TIERS}.{tier}: expected an object, got {entry!r}")
        sides: dict[str, Mapping[str, Decimal] | None] = {}
        for side in ("requests", "limits"):
            budget = entry.get(side)
            if budget is None:
                sides[side] = None
                continue
            try:
                sides[side] = {what: parse_quantity(budget[what]) for what in ("cpu", "memory")}
            except (QuantityError, KeyError, TypeError) as exc:
                where = f"policy config {TIERS}.{tier}.{side}"
                raise ConfigError(f"{where}: needs cpu and memory quantities ({exc})") from exc
        result[str(tier)] = TierBudget(sides["requests"], sides["limits"], bool(entry.get("gpu", False)))
    return result
