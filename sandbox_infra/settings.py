"""Stack settings: the per-environment knobs (images, storage classes, limits) in one typed place.

They come from Pulumi stack config under the ``sandbox-infra:`` namespace. The same parser reads a
``Pulumi.<stack>.yaml`` file directly, so ``python -m sandbox_infra check`` validates a roster against
the stack's limits without running Pulumi or decrypting anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from sandbox_infra.charts import RELEASE_GROUPS
from sandbox_infra.images import reference_problem, tag_problem
from sandbox_infra.quantity import QuantityError, parse_quantity
from sandbox_infra.source import InputError, load_yaml

CONFIG_NAMESPACE = "sandbox-infra"
# Keys whose values are secrets: only their presence is read outside Pulumi.
API_KEY = "geminiApiKey"
CLIENT_API_KEYS = "clientGeminiApiKeys"
DATABASE_PASSWORDS = "databasePasswords"
"""A map of secrets, one password per database role (``databasePasswords.<login>``; docs/database.md)."""
REGISTRY_PULL_TOKEN = "registryPullToken"
"""The Harbor robot account's token sandbox pods pull their images with (a secret string)."""
PLATFORM_SECRETS = "platformSecrets"
"""The Helm releases' own credentials (a secret object; which keys each release needs: ``charts.py``)."""
SECRET_MAPS = (CLIENT_API_KEYS, DATABASE_PASSWORDS, PLATFORM_SECRETS)
"""Secret settings that are maps: their keys are in clear, each value is encrypted."""
SECRET_SETTINGS = (API_KEY, REGISTRY_PULL_TOKEN, *SECRET_MAPS)
"""Settings whose values are secrets; their keys (for maps) are in clear, their values never are."""

RELEASES = tuple(RELEASE_GROUPS)
"""The platform's Helm releases, each switched on by naming it in ``releases`` (charts.py pins them)."""


@dataclass(frozen=True)
class ClusterCapacity:
    """What the cluster can hold (setting ``clusterCapacity``), for the change report: a roster whose quota
    reservations add up to more than this is flagged. Each dimension is optional; an absent one is not
    checked. Example: ``{cpu: "96", memory: 384Gi, gpu: 4, storage: 20Ti}``."""

    cpu: Decimal | None = None
    """Cores that sandboxes may request in total (the nodes' allocatable CPU, less the platform's share)."""
    memory: Decimal | None = None
    """Bytes of memory sandboxes may request in total."""
    gpu: int | None = None
    """GPUs in the cluster."""
    storage: Decimal | None = None
    """Bytes of volume storage the storage classes can provision."""


@dataclass(frozen=True)
class Prices:
    """Monthly prices (setting ``prices``) for the change report's cost estimate; without them the report
    shows no cost. Example: ``{currency: EUR, cpuCoreMonth: "21.5", memoryGiBMonth: "2.9", gpuMonth: "650",
    storageGiBMonth: "0.1"}``. Compute is priced on what active sandboxes request; storage on every volume
    the roster keeps (suspended and archived sandboxes keep theirs)."""

    currency: str
    cpu_core_month: Decimal
    memory_gib_month: Decimal
    gpu_month: Decimal
    storage_gib_month: Decimal


_CAPACITY_KEYS = ("cpu", "memory", "gpu", "storage")
_PRICE_KEYS = {
    "cpuCoreMonth": "cpu_core_month",
    "memoryGiBMonth": "memory_gib_month",
    "gpuMonth": "gpu_month",
    "storageGiBMonth": "storage_gib_month",
}


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

    # The digests of these defaults are placeholders (sha256 of "placeholder: <image> <version>"): the registry
    # is an example too, and the local cluster pulls no image. A real stack sets its own (docs/hardening.md).
    gemini_cli_tag: str = "0.19.4@sha256:f11935bc596ce19da04bc6dd99489e1ebbe067104bf113d56bf99e32a9e893a0"
    """Tag of the base image, pinned by digest (``TAG@sha256:DIGEST``), used when a sandbox names no image."""

    user_image_prefix: str = "registry.platform.com/sandboxes/gemini-cli-user-"
    """Per-user images committed by the platform live at ``<prefix><freelancer-id>:<tag>[@sha256:<digest>]``."""

    code_server_image: str = (
        "registry.platform.com/mirror/code-server:4.105.1"
        "@sha256:2e41b04a4c5c2ca0e7d23e5a9a594728cb19106f6f51b639a6f70821a4ac1537"
    )
    """code-server, mirrored into the platform registry: ``name:tag@sha256:...`` (or ``name@sha256:...``)."""

    require_image_digests: bool = True
    """Every image (these settings and the roster's per-user ``image``) must carry an ``@sha256:`` digest, so
    what runs is exactly what was reviewed. On by default, as in production; ``false`` allows tags alone
    (and the orchestrator makes the policy pack's digest rule advisory)."""

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

    cluster_capacity: ClusterCapacity | None = None
    """What the cluster can hold (see :class:`ClusterCapacity`); only the change report reads it."""

    prices: Prices | None = None
    """Monthly prices for the change report's cost estimate (see :class:`Prices`); only the report reads them."""

    database_host: str = ""
    """The PostgreSQL server of the platform's database (docs/database.md). Empty: no database is declared."""

    database_port: str = "5432"

    database_name: str = "sandbox_platform"
    """The platform's database. Its roles are named after it: ``<name>_owner``, ``_migrator``, ``_api``,
    ``_operator`` and ``_readonly``, so two environments on one server never share a role."""

    database_ssl_mode: str = "verify-full"
    """libpq ``sslmode`` of every connection, the program's and the services'. ``disable`` only for a server
    on the same host."""

    database_roles: str = "managed"
    """``managed``: the program creates the roles, the database, its schema and their privileges with
    pulumi-postgresql, as ``databaseAdminRole``. ``existing``: a DBA prepared them (the script
    ``python -m sandbox_infra database-script`` prints); the program only migrates and writes records."""

    database_admin_role: str = ""
    """The role pulumi-postgresql connects as (managed roles only): one with CREATEROLE and CREATEDB, such as
    a managed server's administrator. Its password is ``databasePasswords.admin``."""

    api_key_present: bool = field(default=False, compare=False)
    client_api_keys_present: frozenset[str] = field(default_factory=frozenset, compare=False)
    database_passwords_present: frozenset[str] = field(default_factory=frozenset, compare=False)
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
# A database name that leaves room for its roles' suffixes (the longest is `_readonly`) within PostgreSQL's 63.
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,53}$")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DATABASE_ROLE_MODES = ("managed", "existing")
DATABASE_LOGINS = ("migrator", "api", "operator", "readonly")
"""The roles that log in, each with its password in ``databasePasswords``; ``admin`` too for managed roles."""


class SettingsError(ValueError):
    """A stack setting with a wrong type or value; ``key`` names the setting when there is one to point at."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _number(key: str, value: object, *, plain: bool = False) -> Decimal:
    """A non-negative quantity (``384Gi``, ``96``), or with ``plain`` a number (``21.5``), from YAML or a string."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: expected a number or a quantity, got {value!r}")
    try:
        number = Decimal(str(value).strip()) if plain else parse_quantity(value)
    except (QuantityError, ArithmeticError) as exc:
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {value!r} is not a number") from exc
    if not number.is_finite():
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {value!r} is not a number")
    if number < 0:
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {value!r} must not be negative")
    return number


def _mapping(key: str, value: object, allowed: Sequence[str], *, required: bool) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: expected a mapping with keys {', '.join(allowed)}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    missing = [k for k in allowed if k not in value] if required else []
    if unknown or missing:
        what = f"unknown key {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {what} (expected {', '.join(allowed)})")
    return value


def _capacity(key: str, value: object) -> ClusterCapacity:
    given = _mapping(key, value, _CAPACITY_KEYS, required=False)
    parsed = {k: _number(f"{key}.{k}", v) for k, v in given.items()}
    gpu = parsed.get("gpu")
    if gpu is not None and gpu != gpu.to_integral_value():
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}.gpu: {given['gpu']!r} is not a whole number")
    return ClusterCapacity(
        cpu=parsed.get("cpu"),
        memory=parsed.get("memory"),
        gpu=int(gpu) if gpu is not None else None,
        storage=parsed.get("storage"),
    )


def _prices(key: str, value: object) -> Prices:
    given = _mapping(key, value, ("currency", *_PRICE_KEYS), required=True)
    currency = given["currency"]
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise SettingsError(f"{CONFIG_NAMESPACE}:{key}.currency: expected a code such as EUR, got {currency!r}")
    amounts = {field: _number(f"{key}.{k}", given[k], plain=True) for k, field in _PRICE_KEYS.items()}
    return Prices(currency=currency, **amounts)


# Settings whose value is a mapping, each with its parser.
_STRUCTURED = {"cluster_capacity": _capacity, "prices": _prices}


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
        if name in _STRUCTURED:
            kwargs[name] = _STRUCTURED[name](key, value)
            continue
        default = getattr(StackSettings(), name)
        if isinstance(default, bool):
            # `pulumi config set` stores strings; a hand-written stack file may hold a YAML boolean.
            flag = {"true": True, "false": False}.get(str(value).lower()) if isinstance(value, str | bool) else None
            if flag is None:
                raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: expected true or false, got {value!r}", key=key)
            kwargs[name] = flag
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: expected a list of strings", key=key)
            kwargs[name] = tuple(value)
        elif not isinstance(value, str):
            raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: expected a string, got {value!r}", key=key)
        else:
            kwargs[name] = value
    maps = {key: secret_keys.get(key) for key in SECRET_MAPS}
    present = {key: frozenset(value) if isinstance(value, Mapping) else frozenset() for key, value in maps.items()}
    settings = StackSettings(
        **kwargs,  # type: ignore[arg-type]
        api_key_present=API_KEY in secret_keys,
        client_api_keys_present=present[CLIENT_API_KEYS],
        database_passwords_present=present[DATABASE_PASSWORDS],
        registry_pull_token_present=REGISTRY_PULL_TOKEN in secret_keys,
        platform_secrets_present=present[PLATFORM_SECRETS],
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
            raise SettingsError(f"{CONFIG_NAMESPACE}:{_CONFIG_KEY[size]}: {exc}", key=_CONFIG_KEY[size]) from exc
    for size in ("default_workspace_size", "default_home_size"):
        if parse_quantity(getattr(settings, size)) > settings.max_storage_bytes:
            key, value = _CONFIG_KEY[size], getattr(settings, size)
            raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {value} exceeds maxStorage {settings.max_storage}", key=key)
    _check_images(settings)
    _check_releases(settings)
    if settings.database_host:
        _check_database(settings)
    return settings


def database_logins(settings: StackSettings) -> tuple[str, ...]:
    """The keys of ``databasePasswords`` the environment needs: every login role's, and the admin's when
    the program manages the roles."""
    return ("admin", *DATABASE_LOGINS) if settings.database_roles == "managed" else DATABASE_LOGINS


def _check_database(settings: StackSettings) -> None:
    def fail(field_name: str, message: str) -> SettingsError:
        key = _CONFIG_KEY[field_name]
        return SettingsError(f"{CONFIG_NAMESPACE}:{key}: {message}", key=key)

    if not settings.database_port.isdigit() or not 0 < int(settings.database_port) < 65536:
        raise fail("database_port", f"{settings.database_port!r} is not a TCP port (1-65535)")
    if not DATABASE_NAME.match(settings.database_name) or settings.database_name.startswith("pg_"):
        raise fail(
            "database_name",
            f"{settings.database_name!r} is not a database name (lowercase letters, digits and '_', not starting "
            "with a digit or 'pg_', at most 54: its roles append up to 9 characters within PostgreSQL's 63)",
        )
    if settings.database_ssl_mode not in SSL_MODES:
        raise fail(
            "database_ssl_mode", f"{settings.database_ssl_mode!r} is not an sslmode (one of {', '.join(SSL_MODES)})"
        )
    if settings.database_roles not in DATABASE_ROLE_MODES:
        raise fail("database_roles", f"{settings.database_roles!r} is not one of {', '.join(DATABASE_ROLE_MODES)}")
    if settings.database_roles == "managed" and not settings.database_admin_role:
        raise fail("database_admin_role", "required when databaseRoles is managed (the role that creates the others)")
    missing = [login for login in database_logins(settings) if login not in settings.database_passwords_present]
    if missing:
        setting = f"{CONFIG_NAMESPACE}:{DATABASE_PASSWORDS}"
        raise SettingsError(
            f"{setting}: no password for {', '.join(missing)}: set each with "
            f"`pulumi config set --secret --path '{setting}.{missing[0]}' ...` (docs/database.md)",
            key=DATABASE_PASSWORDS,
        )


def _check_releases(settings: StackSettings) -> None:
    """The release switches name known releases, and Loki's storage is complete. (The secrets a release needs
    are checked by the program that declares it, the platform stack's: client stacks never read them.)"""
    unknown = sorted(set(settings.releases) - set(RELEASES))
    if unknown:
        raise SettingsError(
            f"{CONFIG_NAMESPACE}:releases: unknown release {', '.join(unknown)} "
            f"(expected any of {', '.join(RELEASES)})",
            key="releases",
        )
    if settings.loki_storage not in ("filesystem", "s3"):
        raise SettingsError(
            f"{CONFIG_NAMESPACE}:lokiStorage: {settings.loki_storage!r} is not filesystem or s3", key="lokiStorage"
        )
    if "loki" in settings.releases and settings.loki_storage == "s3" and not settings.loki_s3_bucket:
        raise SettingsError(f"{CONFIG_NAMESPACE}:lokiS3Bucket: required when lokiStorage is s3", key="lokiS3Bucket")


def _check_images(settings: StackSettings) -> None:
    """The images are references the kubelet can pull, pinned by digest when the stack requires it."""
    require = settings.require_image_digests
    repository_problem = reference_problem(settings.gemini_cli_image + ":tag", require_digest=False)
    for field_name, problem in (
        ("gemini_cli_image", repository_problem and f"{settings.gemini_cli_image!r} is not an image repository"),
        ("gemini_cli_tag", tag_problem(settings.gemini_cli_tag, require_digest=require)),
        ("code_server_image", reference_problem(settings.code_server_image, require_digest=require)),
    ):
        if problem is not None:
            key = _CONFIG_KEY[field_name]
            why = " (the stack setting requireImageDigests is true)" if require and "by tag only" in problem else ""
            raise SettingsError(f"{CONFIG_NAMESPACE}:{key}: {problem}{why}", key=key)


def read_stack_file(path: Path) -> dict[str, Any]:
    """``Pulumi.<stack>.yaml`` as data; raises :class:`SettingsError` naming the file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: cannot read stack settings: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise SettingsError(f"{path}: cannot read stack settings: expected a mapping with a 'config' mapping")
    return document


def settings_from_stack_document(document: Mapping[str, Any], *, path: Path | None = None) -> StackSettings:
    """Settings from a loaded stack file, without Pulumi: plain values, and which secrets are set.

    With the file's ``path``, an error about one setting names the file, line and column of its key."""
    try:
        return _settings_from_document(document)
    except SettingsError as exc:
        if path is None or exc.key is None:
            raise
        where = _key_position(path, f"{CONFIG_NAMESPACE}:{exc.key}")
        raise SettingsError(f"{path.name}:{where[0]}:{where[1]}: {exc}" if where else f"{path.name}: {exc}") from None


def _key_position(path: Path, config_key: str) -> tuple[int, int] | None:
    """Line and column of ``config: {config_key: ...}`` in a stack file (None when the key is not there)."""
    try:
        _, positions = load_yaml(path)
    except InputError:
        return None
    return positions.keys.get(("config", config_key))


def _settings_from_document(document: Mapping[str, Any]) -> StackSettings:
    config = document.get("config") or {}
    prefix = f"{CONFIG_NAMESPACE}:"
    plain: dict[str, object] = {}
    secrets: dict[str, object] = {}
    for full_key, value in config.items():
        if not str(full_key).startswith(prefix):
            continue
        key = str(full_key)[len(prefix) :]
        if key in SECRET_SETTINGS:
            # Secrets are stored encrypted ({secure: ...}); a map of secrets keeps its keys in clear.
            secrets[key] = {k: True for k in value} if isinstance(value, dict) and "secure" not in value else True
        else:
            plain[key] = value
    return settings_from_mapping(plain, secret_keys=secrets)


def settings_from_stack_file(path: Path) -> StackSettings:
    """Read ``Pulumi.<stack>.yaml`` without Pulumi: plain values, and which secrets are set."""
    return settings_from_stack_document(read_stack_file(path), path=path)
