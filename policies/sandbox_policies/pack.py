"""The policies, as the Pulumi engine sees them: name, description, remediation, enforcement, config schema.

Names follow Pulumi's compliance packs: ``kubernetes-<group>-<version>-<kind>-<rule>``. The container
rules are named for the Pod (``core/v1``) because they check pod specs wherever they are: Pods and the pod
templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs (one policy per rule,
so a threshold such as the allowed registries is configured once).

Every policy is mandatory: each guards against something that loses data, leaks a credential, breaks
tenant isolation, or fails only halfway through ``pulumi up``. None has a reason to be advisory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from sandbox_policies import (
    config,
    credentials,
    hardening,
    namespaces,
    network,
    sandboxes,
    secrets,
    services,
    storage,
    tenancy,
    workloads,
)
from sandbox_policies.model import NAMESPACE, POD_SPEC_PATHS, PVC, SECRET, STATEFULSET, Resource, Violation

PACK_NAME = "sandbox-infra-policies"
DIGEST_POLICY = "kubernetes-core-v1-pod-images-by-digest"
"""Advisory instead of mandatory in an environment whose stack setting requireImageDigests is false (the
orchestrator passes that as the pack's config)."""
READINESS_POLICY = "kubernetes-core-v1-pod-readiness-probe"
WORKLOAD_TYPES = frozenset(POD_SPEC_PATHS)
_WORKLOADS_TEXT = "Pods and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs"

Config = Mapping[str, Any]
ResourceCheck = Callable[[Resource, Config], list[str]]
StackCheck = Callable[[list[Resource], Config], list[Violation]]


def resource_policy(
    *,
    name: str,
    description: str,
    remediation: str,
    types: frozenset[str],
    check: ResourceCheck,
    severity: Severity,
    config_keys: tuple[str, ...] = (),
) -> ResourceValidationPolicy:
    """A mandatory policy that runs ``check`` on each resource of ``types`` and reports each message."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type in types:
            for message in check(Resource.from_args(args), args.get_config()):
                report_violation(message, None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=config.schema(*config_keys) if config_keys else None,
        severity=severity,
        remediation_steps=remediation,
    )


def stack_policy(
    *,
    name: str,
    description: str,
    remediation: str,
    check: StackCheck,
    severity: Severity,
    config_keys: tuple[str, ...] = (),
) -> StackValidationPolicy:
    """A mandatory policy that runs ``check`` once on every Kubernetes resource of the stack."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [Resource.from_stack(r) for r in args.resources if r.resource_type.startswith("kubernetes:")]
        for violation in check(resources, args.get_config()):
            report_violation(violation.message, violation.urn)

    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=config.schema(*config_keys) if config_keys else None,
        severity=severity,
        remediation_steps=remediation,
    )


def _steps(fix: str) -> str:
    """A check's "Fix: ..." sentence as remediation steps."""
    steps = fix.removeprefix("Fix: ")
    return steps[:1].upper() + steps[1:]


def _api_key_secret(resource: Resource, cfg: Config) -> list[str]:
    if not secrets.installed():
        raise RuntimeError("sandbox_policies.secrets.install() must run before the pack serves (see __main__.py)")
    return credentials.check_api_key_secret(resource, config.api_key_secret_names(cfg), config.api_key_patterns(cfg))


def all_policies() -> list[Policy]:
    """Every policy of the pack, resource policies first."""
    return [
        resource_policy(
            name="kubernetes-core-v1-pod-configure-resources",
            description=(
                f"Every container, init containers too, sets cpu and memory requests and limits ({_WORKLOADS_TEXT})."
            ),
            remediation=_steps(workloads.FIX_RESOURCES),
            types=WORKLOAD_TYPES,
            check=lambda r, _: workloads.check_resources(r),
            severity=Severity.HIGH,
        ),
        resource_policy(
            name="kubernetes-core-v1-pod-restricted-security-context",
            description=(
                "Pods pass Pod Security 'restricted': no privileged containers, privilege escalation, host "
                "namespaces, hostPath volumes or added capabilities; runAsNonRoot, drop ALL, seccomp RuntimeDefault."
            ),
            remediation=_steps(workloads.FIX_SECURITY),
            types=WORKLOAD_TYPES,
            # Only Istio's node agents are exempt (config privilegedNamespaces; never a client namespace).
            check=lambda r, c: [] if r.namespace in config.privileged_namespaces(c) else workloads.check_security(r),
            severity=Severity.CRITICAL,
            config_keys=(config.PRIVILEGED_NAMESPACES,),
        ),
        resource_policy(
            name="kubernetes-core-v1-pod-allowed-pinned-images",
            description="Images come from the allowed registries and are pinned (no :latest, no missing tag).",
            remediation=_steps(workloads.FIX_IMAGES),
            types=WORKLOAD_TYPES,
            check=lambda r, c: workloads.check_images(r, config.allowed_registries(c)),
            severity=Severity.HIGH,
            config_keys=(config.ALLOWED_REGISTRIES,),
        ),
        resource_policy(
            name="kubernetes-core-v1-pod-api-keys-from-secrets",
            description="No container sets an API key as a literal env value: keys come from Secrets, as files.",
            remediation=_steps(workloads.FIX_API_KEYS),
            types=WORKLOAD_TYPES,
            check=lambda r, c: workloads.check_api_key_env(r, config.api_key_patterns(c)),
            severity=Severity.CRITICAL,
            config_keys=(config.API_KEY_PATTERNS,),
        ),
        resource_policy(
            name=READINESS_POLICY,
            description="Every long-running container has a readiness probe (init containers and Jobs need none).",
            remediation=_steps(hardening.FIX_READINESS),
            types=WORKLOAD_TYPES,
            check=lambda r, _: hardening.check_readiness(r),
            severity=Severity.MEDIUM,
        ),
        resource_policy(
            name=DIGEST_POLICY,
            description="Every image is pinned by an @sha256 digest, not by a tag alone (a tag can be moved).",
            remediation=_steps(hardening.FIX_DIGEST),
            types=WORKLOAD_TYPES,
            check=lambda r, _: hardening.check_digests(r),
            severity=Severity.HIGH,
        ),
        resource_policy(
            name="kubernetes-core-v1-pod-image-pull-policy-always",
            description="Every container, init containers too, sets imagePullPolicy: Always.",
            remediation=_steps(hardening.FIX_PULL_POLICY),
            types=WORKLOAD_TYPES,
            check=lambda r, _: hardening.check_pull_policy(r),
            severity=Severity.MEDIUM,
        ),
        resource_policy(
            name="kubernetes-core-v1-pod-high-user-and-group-ids",
            description=(
                f"Every container runs as a runAsUser and runAsGroup of at least {hardening.MIN_ID}, and the pod's "
                "fsGroup too: lower ids may be accounts on the node."
            ),
            remediation=_steps(hardening.FIX_IDS),
            types=WORKLOAD_TYPES,
            check=lambda r, _: hardening.check_ids(r),
            severity=Severity.HIGH,
        ),
        resource_policy(
            name="kubernetes-core-v1-pod-secrets-as-files",
            description="No container takes a Secret through its environment (secretKeyRef, envFrom): files only.",
            remediation=_steps(hardening.FIX_SECRET_ENV),
            types=WORKLOAD_TYPES,
            check=lambda r, _: hardening.check_secret_env(r),
            severity=Severity.HIGH,
        ),
        resource_policy(
            name="kubernetes-apps-v1-statefulset-sandbox-fits-tier",
            description="A sandbox pod fits its tier's budget (requests and limits), and only GPU tiers get a GPU.",
            remediation=_steps(workloads.FIX_TIER),
            types=frozenset({STATEFULSET}),
            check=lambda r, c: workloads.check_tier(r, config.tiers(c)),
            severity=Severity.HIGH,
            config_keys=(config.TIERS,),
        ),
        resource_policy(
            name="kubernetes-helm-v4-chart-pinned-allowed-repository",
            description="Helm releases name an exact chart version from an allowed chart repository.",
            remediation=_steps(services.FIX_CHART),
            types=frozenset({services.CHART}),
            check=lambda r, c: services.check_chart(r, config.allowed_chart_repositories(c)),
            severity=Severity.HIGH,
            config_keys=(config.ALLOWED_CHART_REPOSITORIES,),
        ),
        resource_policy(
            name="kubernetes-core-v1-persistentvolumeclaim-protected-sandbox-volume",
            description="Sandbox workspace and home volumes are protected, so no Pulumi change can delete them.",
            remediation="Declare sandbox volumes with ResourceOptions(protect=True, retain_on_delete=True).",
            types=frozenset({PVC}),
            check=lambda r, _: storage.check_protected(r),
            severity=Severity.CRITICAL,
        ),
        resource_policy(
            name="kubernetes-core-v1-persistentvolumeclaim-allowed-storage-class",
            description="PersistentVolumeClaims name one of the configured StorageClasses.",
            remediation="Set spec.storageClassName to a configured class (stack settings workspace/homeStorageClass).",
            types=frozenset({PVC}),
            check=lambda r, c: storage.check_storage_class(r, config.storage_classes(c)),
            severity=Severity.MEDIUM,
            config_keys=(config.STORAGE_CLASSES,),
        ),
        resource_policy(
            name="kubernetes-core-v1-persistentvolumeclaim-maximum-size",
            description="A PersistentVolumeClaim requests storage, and no more than the configured maximum.",
            remediation="Request at most maxStorage (the roster's storage sizes, the stack's maxStorage).",
            types=frozenset({PVC}),
            check=lambda r, c: storage.check_size(r, *config.max_storage(c)),
            severity=Severity.MEDIUM,
            config_keys=(config.MAX_STORAGE,),
        ),
        resource_policy(
            name="kubernetes-core-v1-namespace-pod-security-restricted",
            description="Client namespaces enforce Pod Security 'restricted' at a pinned version.",
            remediation="Label it pod-security.kubernetes.io/enforce=restricted and enforce-version=v1.<minor>.",
            types=frozenset({NAMESPACE}),
            check=lambda r, _: namespaces.check_pod_security(r),
            severity=Severity.HIGH,
        ),
        resource_policy(
            name="kubernetes-core-v1-secret-api-key-is-pulumi-secret",
            description="Secrets holding API keys get them as Pulumi secrets, never as plain text in the inputs.",
            remediation="Read the key from `pulumi config set --secret` and pass it as a secret Output.",
            types=frozenset({SECRET}),
            check=_api_key_secret,
            severity=Severity.CRITICAL,
            config_keys=(config.API_KEY_SECRET_NAMES, config.API_KEY_PATTERNS),
        ),
        stack_policy(
            name="kubernetes-core-v1-namespace-tenant-guardrails",
            description="Every client namespace has a ResourceQuota, a LimitRange and a default-deny NetworkPolicy.",
            remediation="Declare client namespaces only through ClientTenant.",
            check=lambda rs, _: tenancy.check_tenant_objects(rs),
            severity=Severity.HIGH,
        ),
        stack_policy(
            name="kubernetes-core-v1-resourcequota-admits-sandboxes",
            description="A namespace's ResourceQuota covers the sum of its pods' requests and limits, and its volumes.",
            remediation="Make the quota the sum of the namespace's sandbox budgets, or lower the pods' resources.",
            check=lambda rs, _: tenancy.check_quota_coverage(rs),
            severity=Severity.HIGH,
        ),
        stack_policy(
            name="kubernetes-platform-v1-sandbox-complete",
            description="Every sandbox has both volumes, a Sandbox object, and a Service unless it is archived.",
            remediation="Declare sandboxes only through FreelancerSandbox.",
            check=lambda rs, _: sandboxes.check_sandboxes_complete(rs),
            severity=Severity.HIGH,
        ),
        stack_policy(
            name="kubernetes-platform-v1-client-routing-and-monitoring",
            description=(
                "Every client namespace has a PeerAuthentication, an AuthorizationPolicy and a PrometheusRule, "
                "and a VirtualService once it has an active sandbox."
            ),
            remediation="Declare each client through ClientRouting and ClientMonitoring.",
            check=lambda rs, _: services.check_client_services(rs),
            severity=Severity.HIGH,
        ),
        stack_policy(
            name="kubernetes-networking-istio-v1-virtualservice-tenant-routes",
            description=(
                "No route reaches a client's sandboxes except from its own namespace's VirtualService, on its own "
                "client-id and the sandbox's freelancer-id."
            ),
            remediation=_steps(services.FIX_ROUTES),
            check=lambda rs, _: services.check_routes(rs),
            severity=Severity.CRITICAL,
        ),
        stack_policy(
            name="kubernetes-core-v1-namespace-default-serviceaccount-no-token",
            description="Every namespace's default ServiceAccount sets automountServiceAccountToken: false.",
            remediation=_steps(hardening.FIX_DEFAULT_SERVICE_ACCOUNT),
            check=lambda rs, _: hardening.check_default_service_accounts(rs),
            severity=Severity.HIGH,
        ),
        stack_policy(
            name="kubernetes-networking-v1-networkpolicy-tenant-isolation",
            description=(
                "No NetworkPolicy admits ingress from another client's namespace or egress to the cloud "
                "metadata address."
            ),
            remediation=_steps(network.FIX_NETWORK),
            check=lambda rs, c: network.check_network_isolation(
                rs, metadata=config.metadata_cidrs(c), pod_networks=config.pod_network_cidrs(c)
            ),
            severity=Severity.CRITICAL,
            config_keys=(config.METADATA_CIDRS, config.POD_NETWORK_CIDRS),
        ),
    ]


def readme_lines() -> list[str]:
    """One line per policy for the README: name — what — enforcement."""
    lines = []
    for policy in all_policies():
        level = policy.enforcement_level.value if policy.enforcement_level else "advisory"
        lines.append(f"- `{policy.name}` — {policy.description} — {level}")
    return lines
