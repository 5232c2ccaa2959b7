"""Stack settings: the per-environment knobs (images, storage classes, limits) in one typed place.

They come from Pulumi stack config under the ``sandbox-infra:`` namespace. The same parser reads a
``Pulumi.<stack>.yaml`` file directly, so ``python -m sandbox_infra check`` validates a roster against
the stack's limits without running Pulumi or decrypting anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from sandbox_infra.charts import RELEASE_GROUPS
from sandbox_infra.quantity import QuantityError, parse_quantity

CONFIG_NAMESPACE = "sandbox-infra"
# Keys whose values are secrets: only their presence is read outside Pulumi.
API_KEY = "geminiApiKey"
CLIENT_API_KEYS = "clientGeminiApiKeys"
REGISTRY_PULL_TOKEN = "registryPullToken"
"""The Harbor robot account's token sandbox pods pull their images with (a secret string)."""
PLATFORM_SECRETS = "platformSecrets"
"""The Helm releases' own credentials (a secret object; which keys each release needs: ``charts.py``)."""
SECRET_SETTINGS = (API_KEY, CLIENT_API_KEYS, REGISTRY_PULL_TOKEN, PLATFORM_SECRETS)
"""Settings whose values are secrets; their keys (for objects) are in clear, their values never are."""

RELEASES = tuple(RELEASE_GROUPS)
"""The platform's Helm releases, each switched on by naming it in ``releases`` (charts.py pins them)."""


@dataclass(frozen=True)
class StackSettings:
    """Non-secret stack configuration, with the defaults a production stack starts from."""

    roster: str = "roster.yaml"
    """Path of the roster file, relative to the project directory."""

    environment: str = ""
    """The environment a stack belongs to (dev, prod): its settings and secrets are ``Pulumi.<environment>.yaml``.
    Empty: the stack's own name (the platform stack). The orchestrator writes it into every client stack."""

    slice: str = "platform"
    """Which part of the plan this stack declares: ``platform``, a client group (``client-<id>`` or a roster
    ``clients[].stack``), or ``all`` (the single-stack layout that ``python -m sandbox_infra adopt`` splits)."""

    gemini_cli_image: str = "registry.platform.com/sandboxes/gemini-cli"
    """Repository of the base Gemini CLI sandbox image (seed section 2.1)."""

    gemini_cli_tag: str = "0.19.4"
    """Pinned tag of the base image, used when a sandbox names no image of its own."""

    user_image_prefix: str = "registry.platform.com/sandboxes/gemini-cli-user-"
    """Per-user images committed by the platform live at ``<prefix><freelancer-id>:<tag>``."""

    code_server_image: str = "registry.platform.com/mirror/code-server:4.105.1"
    """code-server, pinned, mirrored into the platform registry."""

    allowed_registries: tuple[str, ...] = ("registry.platform.com/",)
    """Image prefixes pods may pull from (also the policy pack's default)."""

    workspace_storage_class: str = "fast-ssd"
    home_storage_class: str = "standard"
    default_workspace_size: str = "50Gi"
    default_home_size: str = "10Gi"
    max_storage: str = "500Gi"
    """No single volume may be larger than this."""

    pod_security_version: str = "v1.34"
    """Pinned Pod Security Standards version for every client namespace."""

    platform_namespace: str = "platform-system"
    controller_service_account: str = "sandbox-operator"
    """The platform's sandbox operator (in ``platform_namespace``), granted a Role in each client namespace."""

    egress_denied_cidrs: tuple[str, ...] = (
        "169.254.0.0/16",  # link-local, including the cloud metadata address 169.254.169.254
        "10.0.0.0/8",  # private ranges: other tenants' pods and services, node networks
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, used as a pod range by some CNIs
    )
    """Ranges that sandbox egress on ports 80/443 must never reach."""

    releases: tuple[str, ...] = RELEASES
    """The Helm releases the platform stack installs (see ``sandbox_infra/charts.py``); drop a name to switch
    that release off. A stack that cannot reach the chart repositories (the local cluster) sets ``[]``."""

    chart_image_mirror: str = "registry.platform.com/mirror"
    """Where every image the releases run is mirrored, under its upstream path (e.g. ``<mirror>/istio/ztunnel``)."""

    platform_storage_class: str = "standard"
    """StorageClass of the releases' volumes (Prometheus, Loki, Tempo, Harbor)."""

    registry_host: str = "registry.platform.com"
    """Host of the platform's Harbor: the per-user images and the pull secret point at it."""

    registry_pull_user: str = "robot$sandboxes+pull"
    """Harbor robot account that sandbox pods pull with (its token: the secret ``registryPullToken``)."""

    sandbox_host: str = "sandbox.platform.internal"
    """Host the ingress gateway routes to code-server, by the ``freelancer-id`` and ``client-id`` headers."""

    loki_storage: str = "filesystem"
    """Where Loki keeps logs: ``filesystem`` (its volume) or ``s3`` (the bucket below, credentials from the
    pod's cloud identity)."""

    loki_s3_bucket: str = ""
    loki_s3_region: str = ""
    loki_s3_endpoint: str = ""
    """Empty: the provider's default endpoint for the region."""

    api_key_present: bool = field(default=False, compare=False)
    client_api_keys_present: frozenset[str] = field(default_factory=frozenset, compare=False)
    registry_pull_token_present: bool = field(default=False, compare=False)
    platform_secrets_present: frozenset[str] = field(default_factory=frozenset, compare=False)

    @property
    def max_storage_bytes(self) -> Decimal:
        return parse_quantity(self.max_storage)


# config key (camelCase, as in Pulumi.<stack>.yaml) -> dataclass field
SETTING_KEYS = {
    "".join(w.capitalize() if i else w for i, w in enumerate(f.name.split("_"))): f.name
    for f in fields(StackSettings)
    if not f.name.endswith("_present")
}


_CONFIG_KEY = {field: key for key, field in SETTING_KEYS.items()}


# A slice id: `platform`, `all`, `client-<uuid>` or a roster stack group (all lowercase DNS labels).
_SLICE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,78}[a-z0-9])?$")
ENVIRONMENT = re.compile(r"^[a-z][a-z0-9]{0,15}$")
ENVIRONMENT_RULE = "is not an environment name (lowercase letters and digits, starting with a letter, at most 16)"


class SettingsError(ValueError):
    """A stack setting with a wrong type or value."""


def _json_list(value: object) -> object:
    """A list setting given as its JSON text (how `pulumi config set KEY '[...]'` stores it), as a list."""
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed: object = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if isinstance(parsed, list) else value
    return value


def settings_from_mapping(values: Mapping[str, object], *, secret_keys: Mapping[str, object]) -> StackSettings:
    """Build settings from ``{configKey: value}`` (namespace already stripped)."""
    kwargs: dict[str, object] = {}
    for key, raw in values.items():
        if key in SECRET_SETTINGS:
            continue
        value = _json_list(raw)
        name = SETTING_KEYS.get(key)
        if name is None:
            raise SettingsError(
                f"{CONFIG_NAMESPACE}:{key}: unknown setting (expected one of {', '.join(sorted(SETTING_KEYS))})"
            )
        default = getattr(StackSettings(), name)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: expected a list of strings")
            kwargs[name] = tuple(value)
        elif not isinstance(value, str):
            raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: expected a string, got {value!r}")
        else:
            kwargs[name] = value
    client_keys = secret_keys.get(CLIENT_API_KEYS)
    platform_secrets = secret_keys.get(PLATFORM_SECRETS)
    settings = StackSettings(
        **kwargs,  # type: ignore[arg-type]
        api_key_present=API_KEY in secret_keys,
        client_api_keys_present=frozenset(client_keys) if isinstance(client_keys, Mapping) else frozenset(),
        registry_pull_token_present=REGISTRY_PULL_TOKEN in secret_keys,
        platform_secrets_present=frozenset(platform_secrets) if isinstance(platform_secrets, Mapping) else frozenset(),
    )
    if not _SLICE.match(settings.slice):
        raise SettingsError(
            f"{CONFIG_NAMESPACE}:slice: {settings.slice!r} is not a slice (platform, all, client-<id> or a stack group)"
        )
    if settings.environment and not ENVIRONMENT.match(settings.environment):
        raise SettingsError(f"{CONFIG_NAMESPACE}:environment: {settings.environment!r} {ENVIRONMENT_RULE}")
    for size in ("max_storage", "default_workspace_size", "default_home_size"):
        try:
            parse_quantity(getattr(settings, size))
        except QuantityError as exc:
            raise SettingsError(f"{CONFIG_NAMESPACE}:{_CONFIG_KEY[size]}: {exc}") from exc
    for size in ("default_workspace_size", "default_home_size"):
        if parse_quantity(getattr(settings, size)) > settings.max_storage_bytes:
            key, value = _CONFIG_KEY[size], getattr(settings, size)
            raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {value} exceeds maxStorage {settings.max_storage}")
    _check_releases(settings)
    return settings


def _check_releases(settings: StackSettings) -> None:
    """The release switches name known releases, and Loki's storage is complete. (The secrets a release needs
    are checked by the program that declares it, the platform stack's: client stacks never read them.)"""
    unknown = sorted(set(settings.releases) - set(RELEASES))
    if unknown:
        raise SettingsError(
            f"{CONFIG_NAMESPACE}:releases: unknown release {', '.join(unknown)} (expected any of {', '.join(RELEASES)})"
        )
    if settings.loki_storage not in ("filesystem", "s3"):
        raise SettingsError(f"{CONFIG_NAMESPACE}:lokiStorage: {settings.loki_storage!r} is not filesystem or s3")
    if "loki" in settings.releases and settings.loki_storage == "s3" and not settings.loki_s3_bucket:
        raise SettingsError(f"{CONFIG_NAMESPACE}:lokiS3Bucket: required when lokiStorage is s3")


def read_stack_file(path: Path) -> dict[str, Any]:
    """``Pulumi.<stack>.yaml`` as data; raises :class:`SettingsError` naming the file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: cannot read stack settings: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise SettingsError(f"{path}: cannot read stack settings: expected a mapping with a 'config' mapping")
    return document


def settings_from_stack_document(document: Mapping[str, Any]) -> StackSettings:
    """Settings from a loaded stack file, without Pulumi: plain values, and which secrets are set."""
    config = document.get("config") or {}
    prefix = f"{CONFIG_NAMESPACE}:"
    plain: dict[str, object] = {}
    secrets: dict[str, object] = {}
    for full_key, value in config.items():
        if not str(full_key).startswith(prefix):
            continue
        key = str(full_key)[len(prefix) :]
        if key in SECRET_SETTINGS:
            # Secrets are stored encrypted ({secure: ...}); a per-client map keeps its keys in clear.
            secrets[key] = {k: True for k in value} if isinstance(value, dict) and "secure" not in value else True
        else:
            plain[key] = value
    return settings_from_mapping(plain, secret_keys=secrets)


def settings_from_stack_file(path: Path) -> StackSettings:
    """Read ``Pulumi.<stack>.yaml`` without Pulumi: plain values, and which secrets are set."""
    return settings_from_stack_document(read_stack_file(path))
