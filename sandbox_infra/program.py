"""The Pulumi program: settings and roster in, the plan computed, one slice of it declared.

Every stack validates the whole roster before the first resource is registered, so a bad roster or a
missing secret changes nothing, and rules across clients hold whichever stack runs. The ``slice`` setting
chooses what the stack declares (see :mod:`sandbox_infra.plan`). Resources are never declared inside
``Output.apply``: previews show all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from uuid import UUID

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import handoff
from sandbox_infra.plan import ALL_SLICES, PLATFORM_SLICE, ApiKeySource, Plan, build_plan
from sandbox_infra.platform import Platform, PlatformArgs
from sandbox_infra.roster import load_roster
from sandbox_infra.sandbox import FreelancerSandbox, FreelancerSandboxArgs
from sandbox_infra.sdk import install_linear_wait, quiet_debug_logs
from sandbox_infra.settings import (
    API_KEY,
    CLIENT_API_KEYS,
    CONFIG_NAMESPACE,
    DATABASE_PASSWORDS,
    SECRET_KEYS,
    SECRET_MAPS,
    SETTING_KEYS,
    SettingsError,
    StackSettings,
    settings_from_mapping,
)
from sandbox_infra.source import InputError
from sandbox_infra.tenancy import ClientTenant, ClientTenantArgs


class ProgramError(pulumi.RunError):
    """Stops the program with a message and no Python traceback (bad input, not a bug)."""


def read_settings() -> StackSettings:
    """Stack settings from Pulumi config. Secrets are only checked for presence here: their values are
    read with ``get_secret`` later and stay secret Outputs end to end."""
    values: dict[str, object] = {}
    secrets: dict[str, object] = {}
    for key in (*SETTING_KEYS, *SECRET_KEYS):
        raw = pulumi.runtime.get_config(f"{CONFIG_NAMESPACE}:{key}")
        if raw is None:
            continue
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key == API_KEY:
            secrets[key] = True
        elif key in SECRET_MAPS:
            secrets[key] = {k: True for k in value} if isinstance(value, dict) else {}
        else:
            values[key] = value if isinstance(value, (list, dict)) else raw
    try:
        return settings_from_mapping(values, secret_keys=secrets)
    except SettingsError as exc:
        raise ProgramError(f"stack {pulumi.get_stack()}: {exc}") from exc


def build(
    plan: Plan,
    slice_id: str,
    api_keys: Mapping[UUID, pulumi.Input[str]],
    provider: k8s.Provider,
    database_passwords: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, object]:
    """Declare one slice of the plan: the platform, one client group, or (``all``) everything in one stack."""
    opts = pulumi.ResourceOptions(provider=provider)
    outputs: dict[str, object] = {}
    platform: Platform | None = None
    if slice_id in (PLATFORM_SLICE, ALL_SLICES):
        platform = Platform("platform", PlatformArgs(plan.platform), opts=opts)
        outputs["platformNamespace"] = platform.namespace
        if plan.platform.database is not None:
            # Imported here: the database's modules load a driver and two SDKs (a quarter of a second) that
            # client stacks, the many, never use.
            from sandbox_infra.database import Database, DatabaseArgs, admin_provider
            from sandbox_infra.postgres import load_migrations

            database_plan, passwords = plan.platform.database, database_passwords or {}
            providers: list[pulumi.ProviderResource] = [provider]
            if database_plan.roles_managed:
                providers.append(admin_provider(database_plan, passwords["admin"]))
            database = Database(
                "database",
                DatabaseArgs(
                    database_plan, passwords, load_migrations(), namespace=platform.namespace, depends_on=[platform]
                ),
                opts=pulumi.ResourceOptions(providers=providers),
            )
            outputs["databaseSecrets"] = database.secrets
    if slice_id == PLATFORM_SLICE:
        return outputs
    if slice_id == ALL_SLICES:
        tenant_plans = list(plan.tenants())
    else:
        group = plan.slice(slice_id)
        if group is None:
            raise ProgramError(
                f"slice {slice_id} has no client in the roster: a stack whose clients were removed is never run "
                "(it would delete their namespaces); see docs on offboarding a client"
            )
        tenant_plans = list(group.tenants)
    # In the single-stack layout the CRD and the platform namespace are declared here too; otherwise the
    # orchestrator brings the platform stack up before any client stack.
    shared: list[pulumi.Resource] = [platform] if platform is not None else []
    namespaces: dict[str, pulumi.Output[str]] = {}
    sandboxes: list[str] = []
    for tenant_plan in tenant_plans:
        tenant = ClientTenant(
            tenant_plan.resource_name,
            ClientTenantArgs(tenant_plan, api_keys.get(tenant_plan.client_id)),
            opts=pulumi.ResourceOptions(provider=provider, depends_on=shared),
        )
        namespaces[str(tenant_plan.client_id)] = tenant.namespace
        for sandbox in tenant_plan.sandboxes:
            FreelancerSandbox(
                sandbox.resource_name,
                FreelancerSandboxArgs(sandbox, namespace=tenant.namespace, depends_on=[tenant, *shared]),
                opts=opts,
            )
            sandboxes.append(f"{sandbox.freelancer_id}@{sandbox.client_id}:{sandbox.state.value}")
    outputs["clientNamespaces"] = namespaces
    outputs["sandboxes"] = sandboxes
    return outputs


def api_keys(plan: Plan, config: pulumi.Config) -> dict[UUID, pulumi.Input[str]]:
    """Each client's Gemini API key, as a secret Output read from the setting the plan names."""
    default_key = config.get_secret(API_KEY)
    client_keys = config.get_secret_object(CLIENT_API_KEYS)
    keys: dict[UUID, pulumi.Input[str]] = {}
    for tenant in plan.tenants():
        if tenant.api_key is ApiKeySource.CLIENT and client_keys is not None:
            keys[tenant.client_id] = client_keys.apply(lambda k, cid=str(tenant.client_id): str(k[cid]))  # type: ignore[misc]
        elif tenant.api_key is ApiKeySource.DEFAULT and default_key is not None:
            keys[tenant.client_id] = default_key
    return keys


def load_plan(settings: StackSettings) -> Plan:
    """Load and validate the whole roster, and plan it; a bad roster stops the program before any resource."""
    stack_file = f"Pulumi.{settings.environment or pulumi.get_stack()}.yaml"
    try:
        roster = load_roster(Path(settings.roster), settings, display_name=settings.roster, stack_file=stack_file)
    except InputError as exc:
        for diagnostic in exc.diagnostics:
            pulumi.log.error(str(diagnostic))
        raise ProgramError(
            f"{settings.roster} is invalid ({len(exc.diagnostics)} errors above); nothing was changed"
        ) from None
    return build_plan(roster, settings)


def database_passwords(settings: StackSettings, config: pulumi.Config) -> dict[str, pulumi.Input[str]]:
    """Each database role's password, as a secret Output of ``databasePasswords.<kind>``."""
    passwords = config.get_secret_object(DATABASE_PASSWORDS)
    if passwords is None:
        return {}
    return {
        kind: passwords.apply(lambda p, k=kind: str(p[k]))  # type: ignore[misc]
        for kind in sorted(settings.database_passwords_present)
    }


def main() -> None:
    """Entry point of ``__main__.py``."""
    quiet_debug_logs()
    install_linear_wait()
    config = pulumi.Config(CONFIG_NAMESPACE)
    settings = read_settings()
    plan = handoff.receive(settings, Path(settings.roster)) or load_plan(settings)
    provider = k8s.Provider("kubernetes", enable_server_side_apply=True)
    passwords = database_passwords(settings, config)
    for key, value in build(plan, settings.slice, api_keys(plan, config), provider, passwords).items():
        pulumi.export(key, value)
