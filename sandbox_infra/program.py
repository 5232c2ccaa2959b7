"""The Pulumi program: settings and roster in, the plan computed, one slice of it declared.

Every stack validates the whole roster before the first resource is registered, so a bad roster or a
missing secret changes nothing, and rules across clients hold whichever stack runs. The ``slice`` setting
chooses what the stack declares (see :mod:`sandbox_infra.plan`). Resources are never declared inside
``Output.apply``: previews show all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import handoff
from sandbox_infra.charts import missing_platform_secrets
from sandbox_infra.mesh import ClientRouting, ClientRoutingArgs
from sandbox_infra.monitoring import ClientMonitoring, ClientMonitoringArgs
from sandbox_infra.plan import ALL_SLICES, PLATFORM_SLICE, ApiKeySource, Plan, build_plan
from sandbox_infra.platform import Platform, PlatformArgs
from sandbox_infra.registry import ClientRegistryAccess, ClientRegistryAccessArgs
from sandbox_infra.roster import load_roster
from sandbox_infra.sandbox import FreelancerSandbox, FreelancerSandboxArgs
from sandbox_infra.sdk import install_linear_wait, quiet_debug_logs
from sandbox_infra.services import PlatformService, PlatformServiceArgs
from sandbox_infra.settings import (
    API_KEY,
    CLIENT_API_KEYS,
    CONFIG_NAMESPACE,
    DATABASE_PASSWORDS,
    PLATFORM_SECRETS,
    REGISTRY_PULL_TOKEN,
    SECRET_MAPS,
    SECRET_SETTINGS,
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
    for key in (*SETTING_KEYS, *SECRET_SETTINGS):
        raw = pulumi.runtime.get_config(f"{CONFIG_NAMESPACE}:{key}")
        if raw is None:
            continue
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in SECRET_MAPS:
            secrets[key] = {k: True for k in value} if isinstance(value, dict) else {}
        elif key in SECRET_SETTINGS:
            secrets[key] = True
        else:
            values[key] = value if isinstance(value, (list, dict)) else raw
    try:
        return settings_from_mapping(values, secret_keys=secrets)
    except SettingsError as exc:
        raise ProgramError(f"stack {pulumi.get_stack()}: {exc}") from exc


@dataclass(frozen=True)
class StackSecrets:
    """The secrets the services need besides the API keys, as secret Outputs (read once in :func:`main`)."""

    platform: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """``platformSecrets``: the releases' credentials, by key."""
    registry_pull_token: pulumi.Input[str] | None = None
    """``registryPullToken``: what client namespaces' pull Secrets hold."""
    database_passwords: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """``databasePasswords``: each database role's password, by kind (docs/database.md)."""


def _declare_services(
    plan: Plan, platform: Platform, secrets: StackSecrets, opts: pulumi.ResourceOptions
) -> list[pulumi.Resource]:
    """The platform's services (mesh, monitoring, registry), after the platform namespace they use."""
    services = plan.platform.services
    assert services is not None, "build_plan always plans the services"
    missing = missing_platform_secrets([r.name for s in services.all() for r in s.releases], secrets.platform)
    if missing:
        raise ProgramError(
            f"the releases switched on need the secrets {', '.join(missing)} of {CONFIG_NAMESPACE}:{PLATFORM_SECRETS} "
            f"(pulumi config set --secret --path '{CONFIG_NAMESPACE}:{PLATFORM_SECRETS}.<key>' <value>; what each "
            f"is: docs/services.md), or switch those releases off in {CONFIG_NAMESPACE}:releases; nothing was changed"
        )
    after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[platform]))
    declared: list[pulumi.Resource] = [
        PlatformService(
            service.name,
            PlatformServiceArgs(service, plan.platform.pod_security_version, secrets.platform),
            opts=after,
        )
        for service in services.all()
    ]
    if services.releases_off:
        pulumi.log.info(
            f"releases switched off by {CONFIG_NAMESPACE}:releases: {', '.join(services.releases_off)} "
            "(their namespaces and custom objects are declared; their Helm charts are not installed)"
        )
    return declared


def build(
    plan: Plan,
    slice_id: str,
    api_keys: Mapping[UUID, pulumi.Input[str]],
    provider: k8s.Provider,
    secrets: StackSecrets | None = None,
) -> dict[str, object]:
    """Declare one slice of the plan: the platform, one client group, or (``all``) everything in one stack."""
    secrets = secrets or StackSecrets()
    opts = pulumi.ResourceOptions(provider=provider)
    outputs: dict[str, object] = {}
    platform: Platform | None = None
    services: list[pulumi.Resource] = []
    if slice_id in (PLATFORM_SLICE, ALL_SLICES):
        platform = Platform("platform", PlatformArgs(plan.platform), opts=opts)
        services = _declare_services(plan, platform, secrets, opts)
        outputs["platformNamespace"] = platform.namespace
        if plan.platform.database is not None:
            # Imported here: the database's modules load a driver and two SDKs (a quarter of a second) that
            # client stacks, the many, never use.
            from sandbox_infra.database import Database, DatabaseArgs, admin_provider
            from sandbox_infra.postgres import load_migrations

            database_plan, passwords = plan.platform.database, secrets.database_passwords
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
        assert plan.platform.services is not None
        outputs["releases"] = [r.name for s in plan.platform.services.all() for r in s.releases]
        outputs["releasesOff"] = list(plan.platform.services.releases_off)
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
    shared: list[pulumi.Resource] = [platform, *services] if platform is not None else []
    namespaces: dict[str, pulumi.Output[str]] = {}
    sandboxes: list[str] = []
    for tenant_plan in tenant_plans:
        tenant = ClientTenant(
            tenant_plan.resource_name,
            ClientTenantArgs(tenant_plan, api_keys.get(tenant_plan.client_id)),
            opts=pulumi.ResourceOptions(provider=provider, depends_on=shared),
        )
        namespaces[str(tenant_plan.client_id)] = tenant.namespace
        after_tenant = [tenant, *shared]
        ClientRouting(f"{tenant_plan.resource_name}-routing", ClientRoutingArgs(tenant_plan, after_tenant), opts=opts)
        ClientMonitoring(
            f"{tenant_plan.resource_name}-monitoring", ClientMonitoringArgs(tenant_plan, after_tenant), opts=opts
        )
        if tenant_plan.pull_secret is not None and secrets.registry_pull_token is not None:
            ClientRegistryAccess(
                f"{tenant_plan.resource_name}-registry",
                ClientRegistryAccessArgs(tenant_plan, secrets.registry_pull_token, after_tenant),
                opts=opts,
            )
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


def stack_secrets(settings: StackSettings, config: pulumi.Config) -> StackSecrets:
    """The services' secrets as secret Outputs: each ``platformSecrets`` key the settings saw, and the pull token."""
    platform: dict[str, pulumi.Input[str]] = {}
    secret_object = config.get_secret_object(PLATFORM_SECRETS) if settings.platform_secrets_present else None
    if secret_object is not None:
        for key in sorted(settings.platform_secrets_present):
            platform[key] = secret_object.apply(lambda values, k=key: str(values[k]))  # type: ignore[misc]
    token = config.get_secret(REGISTRY_PULL_TOKEN) if settings.registry_pull_token_present else None
    return StackSecrets(
        platform=platform, registry_pull_token=token, database_passwords=database_passwords(settings, config)
    )


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
    secrets = stack_secrets(settings, config)
    for key, value in build(plan, settings.slice, api_keys(plan, config), provider, secrets).items():
        pulumi.export(key, value)
