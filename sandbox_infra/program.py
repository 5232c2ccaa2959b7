"""The Pulumi program: settings and roster in, components out.

Everything is validated before the first resource is registered, so a bad roster or a missing secret
changes nothing. Resources are never declared inside ``Output.apply``: previews show all of them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra.platform import Platform, PlatformArgs
from sandbox_infra.quantity import parse_quantity
from sandbox_infra.roster import Freelancer, Roster, SandboxEntry, SandboxState, load_roster, sandbox_budget
from sandbox_infra.sandbox import FreelancerSandbox, FreelancerSandboxArgs, VolumeSpec
from sandbox_infra.sdk import quiet_debug_logs
from sandbox_infra.settings import (
    API_KEY,
    CLIENT_API_KEYS,
    CONFIG_NAMESPACE,
    SETTING_KEYS,
    SettingsError,
    StackSettings,
    settings_from_mapping,
)
from sandbox_infra.source import InputError
from sandbox_infra.tenancy import ClientTenant, ClientTenantArgs, QuotaBudget
from sandbox_infra.tiers import TIERS, ZERO, Resources, split_budget


class ProgramError(pulumi.RunError):
    """Stops the program with a message and no Python traceback (bad input, not a bug)."""


def read_settings() -> StackSettings:
    """Stack settings from Pulumi config. Secrets are only checked for presence here: their values are
    read with ``get_secret`` later and stay secret Outputs end to end."""
    values: dict[str, object] = {}
    secrets: dict[str, object] = {}
    for key in (*SETTING_KEYS, API_KEY, CLIENT_API_KEYS):
        raw = pulumi.runtime.get_config(f"{CONFIG_NAMESPACE}:{key}")
        if raw is None:
            continue
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key == API_KEY:
            secrets[key] = True
        elif key == CLIENT_API_KEYS:
            secrets[key] = {k: True for k in value} if isinstance(value, dict) else {}
        else:
            values[key] = value if isinstance(value, list) else raw
    try:
        return settings_from_mapping(values, secret_keys=secrets)
    except SettingsError as exc:
        raise ProgramError(f"stack {pulumi.get_stack()}: {exc}") from exc


def client_quotas(roster: Roster, settings: StackSettings) -> dict[UUID, QuotaBudget]:
    """Each client's quota: the sum of its sandboxes' tier budgets, volume allowances and sizes.

    Suspended sandboxes keep their compute reservation (resuming must never fail on quota); archived
    ones keep only their volumes.
    """
    compute: dict[UUID, Resources] = defaultdict(lambda: ZERO)
    pvcs: dict[UUID, int] = defaultdict(int)
    storage: dict[UUID, Decimal] = defaultdict(Decimal)
    for _, sandbox in roster.sandboxes():
        if sandbox.state is not SandboxState.ARCHIVED:
            compute[sandbox.client] += split_budget(sandbox_budget(sandbox)).pod
        pvcs[sandbox.client] += TIERS[sandbox.tier].pvcs
        workspace, home = volume_sizes(sandbox, settings)
        storage[sandbox.client] += parse_quantity(workspace) + parse_quantity(home)
    return {c.id: QuotaBudget(compute=compute[c.id], pvcs=pvcs[c.id], storage=storage[c.id]) for c in roster.clients}


def volume_sizes(sandbox: SandboxEntry, settings: StackSettings) -> tuple[str, str]:
    return (
        sandbox.storage.workspace or settings.default_workspace_size,
        sandbox.storage.home or settings.default_home_size,
    )


def gemini_image(freelancer: Freelancer, sandbox: SandboxEntry, settings: StackSettings) -> str:
    """The per-user image when the roster names a tag (seed 2.1: images committed per user), else the base."""
    if sandbox.image:
        return f"{settings.user_image_prefix}{freelancer.id}:{sandbox.image}"
    return f"{settings.gemini_cli_image}:{settings.gemini_cli_tag}"


def build(
    roster: Roster, settings: StackSettings, api_keys: Mapping[UUID, pulumi.Input[str]], provider: k8s.Provider
) -> dict[str, object]:
    """Declare the platform, one tenant per client and one sandbox per roster entry."""
    opts = pulumi.ResourceOptions(provider=provider)
    platform = Platform(
        "platform",
        PlatformArgs(namespace=settings.platform_namespace, pod_security_version=settings.pod_security_version),
        opts=opts,
    )
    quotas = client_quotas(roster, settings)
    tenants: dict[UUID, ClientTenant] = {}
    for client in roster.clients:
        tenants[client.id] = ClientTenant(
            f"client-{client.id}",
            ClientTenantArgs(
                client_id=client.id,
                client_name=client.name,
                quota=quotas[client.id],
                api_key=api_keys.get(client.id),
                platform_namespace=settings.platform_namespace,
                controller_service_account=settings.controller_service_account,
                pod_security_version=settings.pod_security_version,
                egress_denied_cidrs=settings.egress_denied_cidrs,
                max_volume_size=settings.max_storage,
            ),
            opts=pulumi.ResourceOptions(provider=provider, depends_on=[platform]),
        )
    sandboxes: list[str] = []
    for freelancer, sandbox in roster.sandboxes():
        tenant = tenants[sandbox.client]
        workspace, home = volume_sizes(sandbox, settings)
        FreelancerSandbox(
            f"sandbox-{freelancer.id}-{sandbox.client}",
            FreelancerSandboxArgs(
                freelancer_id=freelancer.id,
                client_id=sandbox.client,
                namespace=tenant.namespace,
                tier=sandbox.tier.value,
                resources=split_budget(sandbox_budget(sandbox)),
                state=sandbox.state,
                gemini_cli_image=gemini_image(freelancer, sandbox, settings),
                custom_image_tag=sandbox.image,
                code_server_image=settings.code_server_image,
                workspace=VolumeSpec(workspace, settings.workspace_storage_class),
                home=VolumeSpec(home, settings.home_storage_class),
                gpu=sandbox.gpu,
                depends_on=[tenant, platform],
            ),
            opts=opts,
        )
        sandboxes.append(f"{freelancer.id}@{sandbox.client}:{sandbox.state.value}")
    return {
        "platformNamespace": platform.namespace,
        "clientNamespaces": {str(c): t.namespace for c, t in tenants.items()},
        "sandboxes": sandboxes,
    }


def main() -> None:
    """Entry point of ``__main__.py``."""
    quiet_debug_logs()
    config = pulumi.Config(CONFIG_NAMESPACE)
    settings = read_settings()
    stack_file = f"Pulumi.{pulumi.get_stack()}.yaml"
    try:
        roster = load_roster(Path(settings.roster), settings, display_name=settings.roster, stack_file=stack_file)
    except InputError as exc:
        for diagnostic in exc.diagnostics:
            pulumi.log.error(str(diagnostic))
        raise ProgramError(
            f"{settings.roster} is invalid ({len(exc.diagnostics)} errors above); nothing was changed"
        ) from None

    default_key = config.get_secret(API_KEY)
    client_keys = config.get_secret_object(CLIENT_API_KEYS)
    api_keys: dict[UUID, pulumi.Input[str]] = {}
    for client in roster.clients:
        if str(client.id) in settings.client_api_keys_present and client_keys is not None:
            api_keys[client.id] = client_keys.apply(lambda keys, cid=str(client.id): str(keys[cid]))  # type: ignore[misc]
        elif default_key is not None:
            api_keys[client.id] = default_key
    provider = k8s.Provider("kubernetes", enable_server_side_apply=True)
    for key, value in build(roster, settings, api_keys, provider).items():
        pulumi.export(key, value)
