"""Each policy passes the stack the program declares for the example roster, and fails it broken one way.

Inputs are real: the program runs under mocks and its resources reach each policy's validator as
pulumi-policy would hand them over (see harness.py). A failing case breaks exactly one thing and asserts
the message names the resource, the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pulumi_policy import ResourceValidationPolicy

from sandbox_infra.plan import PLATFORM_SLICE
from tests.conftest import REPO
from tests.policy.harness import (
    POLICIES,
    Declared,
    as_workload,
    check_all,
    check_resource,
    check_stack,
    declare_example,
    find,
    swap,
)

ACME = "0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
GLOBEX = "083cfb9d-4274-45dd-b4a8-bb1b0e883cf5"
INITECH = "b38cf925-1979-4799-93b8-ea79b0712d0c"
GRACE = "64a1e28f-6dcb-41fe-a9d2-33558e10fc1d"  # acme, premium with a GPU
ADA = "e0d60578-9d7a-46c3-89f8-a131aaa11434"  # acme standard, globex basic
FRANCES = "95a68ebd-8ec9-43ef-96f8-342291623c48"  # initech, archived

NS = "kubernetes:core/v1:Namespace"
QUOTA = "kubernetes:core/v1:ResourceQuota"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
STS = "kubernetes:apps/v1:StatefulSet"
SANDBOX = "kubernetes:platform.com/v1:Sandbox"
WORKLOADS = [
    "kubernetes:core/v1:Pod",
    "kubernetes:apps/v1:Deployment",
    STS,
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
]
SIG = "4dabf18193072939515e22adb298388d"

RESOURCES = "kubernetes-core-v1-pod-configure-resources"
SECURITY = "kubernetes-core-v1-pod-restricted-security-context"
IMAGES = "kubernetes-core-v1-pod-allowed-pinned-images"
API_KEY_ENV = "kubernetes-core-v1-pod-api-keys-from-secrets"
TIER = "kubernetes-apps-v1-statefulset-sandbox-fits-tier"
PROTECTED = "kubernetes-core-v1-persistentvolumeclaim-protected-sandbox-volume"
STORAGE_CLASS = "kubernetes-core-v1-persistentvolumeclaim-allowed-storage-class"
MAX_SIZE = "kubernetes-core-v1-persistentvolumeclaim-maximum-size"
POD_SECURITY = "kubernetes-core-v1-namespace-pod-security-restricted"
API_KEY_SECRET = "kubernetes-core-v1-secret-api-key-is-pulumi-secret"
GUARDRAILS = "kubernetes-core-v1-namespace-tenant-guardrails"
QUOTA_COVERS = "kubernetes-core-v1-resourcequota-admits-sandboxes"
SANDBOX_COMPLETE = "kubernetes-platform-v1-sandbox-complete"
ISOLATION = "kubernetes-networking-v1-networkpolicy-tenant-isolation"
READINESS = "kubernetes-core-v1-pod-readiness-probe"
DIGESTS = "kubernetes-core-v1-pod-images-by-digest"
PULL_ALWAYS = "kubernetes-core-v1-pod-image-pull-policy-always"
HIGH_IDS = "kubernetes-core-v1-pod-high-user-and-group-ids"
SECRETS_AS_FILES = "kubernetes-core-v1-pod-secrets-as-files"
DEFAULT_SA = "kubernetes-core-v1-namespace-default-serviceaccount-no-token"
SA_PATCH = "kubernetes:core/v1:ServiceAccountPatch"


def ns(client: str) -> str:
    return f"client-{client}"


def messages(policy: str, stack: list[Declared]) -> list[str]:
    """Everything one policy reports for a stack (a resource policy runs on each resource)."""
    if isinstance(POLICIES[policy], ResourceValidationPolicy):
        return [m for r in stack for m in check_resource(policy, r)]
    return [m for _, m in check_stack(policy, stack)]


def edit(stack: list[Declared], type_: str, name: str, namespace: str | None = None) -> tuple[list[Declared], Declared]:
    """The stack with one resource replaced by a copy to break, and that copy."""
    old = find(stack, type_, name, namespace)
    new = old.edited()
    return swap(stack, old, new), new


def grace(stack: list[Declared]) -> tuple[list[Declared], Declared]:
    return edit(stack, STS, f"sandbox-{GRACE}", ns(ACME))


# --- breakages: each returns the example stack with exactly one thing wrong -------------------------------


def no_memory_limit(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    del sts.container("code-server")["resources"]["limits"]["memory"]
    return stack


def init_container_without_requests(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    del sts.container("prepare-home")["resources"]["requests"]
    return stack


def request_above_limit(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("gemini-cli")["resources"]["limits"]["cpu"] = "2"  # its request is 3
    return stack


def privileged(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("gemini-cli")["securityContext"]["privileged"] = True
    return stack


def escalation(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("prepare-home")["securityContext"]["allowPrivilegeEscalation"] = True
    return stack


def host_network(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.pod_spec()["hostNetwork"] = True
    return stack


def host_path(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.pod_spec()["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}})
    return stack


def added_capability(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("code-server")["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    return stack


def keeps_capabilities(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    del sts.container("code-server")["securityContext"]["capabilities"]
    return stack


def root_container(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("gemini-cli")["securityContext"].update(runAsNonRoot=False, runAsUser=0)
    return stack


def unconfined(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.pod_spec()["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    del sts.container("gemini-cli")["securityContext"]["seccompProfile"]  # the others override the pod's
    return stack


def docker_hub_image(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("code-server")["image"] = f"docker.io/codercom/code-server:4.105.1@sha256:{'ab' * 32}"
    return stack


def latest_image(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("gemini-cli")["image"] = "registry.platform.com/sandboxes/gemini-cli:latest"
    return stack


def untagged_image(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("prepare-home")["image"] = "registry.platform.com/sandboxes/gemini-cli"
    return stack


def look_alike_registry(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("gemini-cli")["image"] = f"registry.platform.com.evil.example/gemini-cli:1@sha256:{'ab' * 32}"
    return stack


def literal_api_key(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("gemini-cli")["env"].append({"name": "GEMINI_API_KEY", "value": "AIza-not-a-real-key"})
    return stack


def premium_pod_labelled_basic(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.wire["spec"]["template"]["metadata"]["labels"]["platform.com/tier"] = "basic"
    return stack


def gpu_on_standard(stack: list[Declared]) -> list[Declared]:
    stack, sts = edit(stack, STS, f"sandbox-{ADA}", ns(ACME))
    resources = sts.container("gemini-cli")["resources"]
    resources["requests"]["nvidia.com/gpu"] = resources["limits"]["nvidia.com/gpu"] = "1"
    return stack


def unknown_tier(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.wire["spec"]["template"]["metadata"]["labels"]["platform.com/tier"] = "gold"
    return stack


def unprotected_volume(stack: list[Declared]) -> list[Declared]:
    old = find(stack, PVC, f"workspace-{GRACE}", ns(ACME))
    return swap(stack, old, Declared(old.type, old.name, old.urn, old.wire, protect=False))


def other_storage_class(stack: list[Declared]) -> list[Declared]:
    stack, pvc = edit(stack, PVC, f"home-{GRACE}", ns(ACME))
    pvc.wire["spec"]["storageClassName"] = "gp2"
    return stack


def default_storage_class(stack: list[Declared]) -> list[Declared]:
    stack, pvc = edit(stack, PVC, f"home-{GRACE}", ns(ACME))
    del pvc.wire["spec"]["storageClassName"]
    return stack


def huge_volume(stack: list[Declared]) -> list[Declared]:
    stack, pvc = edit(stack, PVC, f"workspace-{GRACE}", ns(ACME))
    pvc.wire["spec"]["resources"]["requests"]["storage"] = "0.5Ti"  # 512Gi > 500Gi
    return stack


def baseline_namespace(stack: list[Declared]) -> list[Declared]:
    stack, namespace = edit(stack, NS, ns(GLOBEX))
    namespace.wire["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    return stack


def unpinned_pod_security(stack: list[Declared]) -> list[Declared]:
    stack, namespace = edit(stack, NS, ns(GLOBEX))
    namespace.wire["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"] = "latest"
    return stack


def plain_text_api_key(stack: list[Declared]) -> list[Declared]:
    stack, secret = edit(stack, SECRET, "gemini-api-key", ns(INITECH))
    wrapped = secret.wire["stringData"]
    assert wrapped[SIG], "the program passes the key as a Pulumi secret"
    secret.wire["stringData"] = wrapped["value"]  # the same key, unwrapped: plain text
    return stack


def no_quota(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, QUOTA, "sandbox-quota", ns(INITECH)), None)


def no_default_deny(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, NETPOL, "default-deny", ns(INITECH)), None)


def default_deny_with_a_rule(stack: list[Declared]) -> list[Declared]:
    stack, policy = edit(stack, NETPOL, "default-deny", ns(INITECH))
    policy.wire["spec"]["egress"] = [{"ports": [{"port": 443, "protocol": "TCP"}]}]
    return stack


def quota_too_small(stack: list[Declared]) -> list[Declared]:
    stack, quota = edit(stack, QUOTA, "sandbox-quota", ns(ACME))
    quota.wire["spec"]["hard"]["limits.memory"] = "24Gi"  # the pods need 28Gi
    return stack


def no_gpu_quota(stack: list[Declared]) -> list[Declared]:
    stack, quota = edit(stack, QUOTA, "sandbox-quota", ns(ACME))
    quota.wire["spec"]["hard"]["requests.nvidia.com/gpu"] = "0"
    return stack


def too_few_claims(stack: list[Declared]) -> list[Declared]:
    stack, quota = edit(stack, QUOTA, "sandbox-quota", ns(INITECH))
    quota.wire["spec"]["hard"]["persistentvolumeclaims"] = "5"  # three sandboxes, six claims
    return stack


def no_home_volume(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, PVC, f"home-{GRACE}", ns(ACME)), None)


def no_service(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, SERVICE, f"sandbox-{ADA}", ns(GLOBEX)), None)


def no_sandbox_object(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, SANDBOX, f"sandbox-{ADA}", ns(GLOBEX)), None)


def unarchived_without_service(stack: list[Declared]) -> list[Declared]:
    stack, sandbox = edit(stack, SANDBOX, f"sandbox-{FRANCES}", ns(INITECH))
    sandbox.wire["spec"]["state"] = "active"
    return stack


def ingress_from_every_tenant(stack: list[Declared]) -> list[Declared]:
    stack, policy = edit(stack, NETPOL, "sandbox-isolation", ns(ACME))
    policy.wire["spec"]["ingress"][0]["from"].append(
        {"namespaceSelector": {"matchLabels": {"app.kubernetes.io/part-of": "sandbox-infra"}}}
    )
    return stack


def ingress_from_named_client(stack: list[Declared]) -> list[Declared]:
    stack, policy = edit(stack, NETPOL, "sandbox-isolation", ns(ACME))
    selector = {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns(GLOBEX)]}]}
    policy.wire["spec"]["ingress"].append({"from": [{"namespaceSelector": selector}]})
    return stack


def ingress_from_anywhere(stack: list[Declared]) -> list[Declared]:
    stack, policy = edit(stack, NETPOL, "sandbox-isolation", ns(ACME))
    policy.wire["spec"]["ingress"].append({"ports": [{"port": 8080, "protocol": "TCP"}]})
    return stack


def ingress_from_pod_network(stack: list[Declared]) -> list[Declared]:
    stack, policy = edit(stack, NETPOL, "sandbox-isolation", ns(ACME))
    policy.wire["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]})
    return stack


def egress_to_metadata(stack: list[Declared]) -> list[Declared]:
    stack, policy = edit(stack, NETPOL, "sandbox-isolation", ns(GLOBEX))
    internet = policy.wire["spec"]["egress"][1]["to"][0]["ipBlock"]
    internet["except"].remove("169.254.0.0/16")
    return stack


def egress_anywhere(stack: list[Declared]) -> list[Declared]:
    stack, policy = edit(stack, NETPOL, "allow-dns", ns(GLOBEX))
    del policy.wire["spec"]["egress"][0]["to"]
    return stack


def no_readiness_probe(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    del sts.container("gemini-cli")["readinessProbe"]
    return stack


def tag_only_image(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("code-server")["image"] = "registry.platform.com/mirror/code-server:4.105.1"
    return stack


def pull_if_not_present(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("prepare-home")["imagePullPolicy"] = "IfNotPresent"
    return stack


def low_uid(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.container("gemini-cli")["securityContext"]["runAsUser"] = 1000  # the image's usual user
    return stack


def low_fs_group(stack: list[Declared]) -> list[Declared]:
    stack, sts = grace(stack)
    sts.pod_spec()["securityContext"]["fsGroup"] = 1000
    return stack


def key_from_env(stack: list[Declared]) -> list[Declared]:
    """The design's original way: GEMINI_API_KEY from the Secret through secretKeyRef."""
    stack, sts = grace(stack)
    ref = {"name": "gemini-api-key", "key": ".env"}
    sts.container("gemini-cli")["env"].append({"name": "GEMINI_API_KEY", "valueFrom": {"secretKeyRef": ref}})
    return stack


def default_sa_untouched(stack: list[Declared]) -> list[Declared]:
    return swap(stack, find(stack, SA_PATCH, "default", ns(GLOBEX)), None)


def default_sa_mounting(stack: list[Declared]) -> list[Declared]:
    stack, patch = edit(stack, SA_PATCH, "default", "platform-system")
    patch.wire["automountServiceAccountToken"] = True
    return stack


Breakage = Callable[[list[Declared]], list[Declared]]
FAILING: list[tuple[str, Breakage, str]] = [
    (
        RESOURCES,
        no_memory_limit,
        f"StatefulSet {ns(ACME)}/sandbox-{GRACE}: container 'code-server' sets no limits.memory",
    ),
    (RESOURCES, init_container_without_requests, "init container 'prepare-home' sets no requests.cpu, requests.memory"),
    (RESOURCES, request_above_limit, "container 'gemini-cli' requests.cpu 3 exceeds limits.cpu 2"),
    (SECURITY, privileged, "container 'gemini-cli' is privileged"),
    (SECURITY, escalation, "init container 'prepare-home' does not set allowPrivilegeEscalation: false"),
    (SECURITY, host_network, "the pod sets hostNetwork: true"),
    (SECURITY, host_path, "mounts hostPath volume 'docker'"),
    (SECURITY, added_capability, "container 'code-server' adds capabilities NET_ADMIN"),
    (SECURITY, keeps_capabilities, "container 'code-server' does not drop ALL capabilities"),
    (SECURITY, root_container, "does not set runAsNonRoot: true (on the container or the pod); runs as UID 0"),
    (SECURITY, unconfined, "container 'gemini-cli' has seccomp profile Unconfined (needs RuntimeDefault)"),
    (
        IMAGES,
        docker_hub_image,
        f"image 'docker.io/codercom/code-server:4.105.1@sha256:{'ab' * 32}' is not from an allowed registry",
    ),
    (IMAGES, latest_image, "uses the :latest tag"),
    (
        IMAGES,
        untagged_image,
        "init container 'prepare-home' image 'registry.platform.com/sandboxes/gemini-cli' has no tag",
    ),
    (IMAGES, look_alike_registry, "is not from an allowed registry (registry.platform.com/)"),
    (API_KEY_ENV, literal_api_key, "container 'gemini-cli' sets GEMINI_API_KEY to a literal value"),
    (TIER, premium_pod_labelled_basic, "the basic-tier sandbox pod requests.cpu 4 exceeds the tier's 1"),
    (TIER, gpu_on_standard, "requests 1 nvidia.com/gpu but the tier has no GPU"),
    (TIER, unknown_tier, "tier 'gold' is not in the tier table"),
    (
        PROTECTED,
        unprotected_volume,
        f"PersistentVolumeClaim {ns(ACME)}/workspace-{GRACE}: this sandbox volume is not protected",
    ),
    (STORAGE_CLASS, other_storage_class, "uses StorageClass 'gp2'; allowed: fast-ssd, standard"),
    (STORAGE_CLASS, default_storage_class, "uses no storageClassName"),
    (MAX_SIZE, huge_volume, "requests 0.5Ti, more than the maximum 500Gi"),
    (POD_SECURITY, baseline_namespace, "pod-security.kubernetes.io/enforce is 'baseline', not 'restricted'"),
    (POD_SECURITY, unpinned_pod_security, "enforce-version is 'latest', not a pinned v1.<minor>"),
    (API_KEY_SECRET, plain_text_api_key, f"Secret {ns(INITECH)}/gemini-api-key: stringData['.env'] is plain text"),
    (GUARDRAILS, no_quota, f"Namespace {ns(INITECH)}: this client namespace has no ResourceQuota."),
    (GUARDRAILS, no_default_deny, "has no default-deny Ingress NetworkPolicy, default-deny Egress NetworkPolicy"),
    (GUARDRAILS, default_deny_with_a_rule, "has no default-deny Egress NetworkPolicy."),
    (
        QUOTA_COVERS,
        quota_too_small,
        f"ResourceQuota {ns(ACME)}/sandbox-quota: the quota cannot admit what its namespace declares: hard limits.memory 24Gi < 28Gi needed (StatefulSet {ns(ACME)}/sandbox-{GRACE} 16Gi",
    ),
    (QUOTA_COVERS, no_gpu_quota, "hard requests.nvidia.com/gpu 0 < 1 needed"),
    (QUOTA_COVERS, too_few_claims, "hard persistentvolumeclaims 5 < 6 needed"),
    (
        SANDBOX_COMPLETE,
        no_home_volume,
        f"sandbox of freelancer {GRACE} in namespace {ns(ACME)} has no the home PersistentVolumeClaim home-{GRACE}",
    ),
    (
        SANDBOX_COMPLETE,
        no_service,
        f"has no the Service sandbox-{ADA} (needed unless the Sandbox's spec.state is archived)",
    ),
    (
        SANDBOX_COMPLETE,
        no_sandbox_object,
        f"sandbox of freelancer {ADA} in namespace {ns(GLOBEX)} has no the Sandbox object",
    ),
    (SANDBOX_COMPLETE, unarchived_without_service, f"has no the Service sandbox-{FRANCES}"),
    (
        ISOLATION,
        ingress_from_every_tenant,
        f"ingress[0].from[1].namespaceSelector selects other clients' namespaces {ns(GLOBEX)}, {ns(INITECH)}",
    ),
    (
        ISOLATION,
        ingress_from_named_client,
        f"ingress[1].from[0].namespaceSelector selects other clients' namespaces {ns(GLOBEX)}",
    ),
    (ISOLATION, ingress_from_anywhere, "ingress[1] has no 'from', so it admits every namespace"),
    (ISOLATION, ingress_from_pod_network, "ingress[1].from[0].ipBlock 10.0.0.0/8 admits the pod network (10.0.0.0/8)"),
    (ISOLATION, egress_to_metadata, "egress[1].to[0].ipBlock 0.0.0.0/0 allows the metadata address 169.254.169.254/32"),
    (
        READINESS,
        no_readiness_probe,
        f"StatefulSet {ns(ACME)}/sandbox-{GRACE}: container 'gemini-cli' has no readinessProbe",
    ),
    (
        DIGESTS,
        tag_only_image,
        "container 'code-server' image 'registry.platform.com/mirror/code-server:4.105.1' is not pinned by digest",
    ),
    (
        PULL_ALWAYS,
        pull_if_not_present,
        "imagePullPolicy is not Always for init container 'prepare-home' (IfNotPresent)",
    ),
    (HIGH_IDS, low_uid, "container 'gemini-cli' runs with runAsUser 1000 (below 10001)"),
    (HIGH_IDS, low_fs_group, f"StatefulSet {ns(ACME)}/sandbox-{GRACE}: the pod runs with fsGroup 1000 (below 10001)"),
    (
        SECRETS_AS_FILES,
        key_from_env,
        "container 'gemini-cli' takes env GEMINI_API_KEY from Secret gemini-api-key",
    ),
    (
        DEFAULT_SA,
        default_sa_untouched,
        f"Namespace {ns(GLOBEX)}: its default ServiceAccount mounts an API token into every pod",
    ),
    (DEFAULT_SA, default_sa_mounting, "Namespace platform-system: its default ServiceAccount mounts an API token"),
    (
        ISOLATION,
        egress_anywhere,
        f"NetworkPolicy {ns(GLOBEX)}/allow-dns: egress[0] has no 'to', so it allows every address",
    ),
]


def test_every_policy_has_a_failing_case() -> None:
    from tests.policy.test_service_policies import FAILING as SERVICES_FAILING

    assert {policy for policy, _, _ in [*FAILING, *SERVICES_FAILING]} == set(POLICIES)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_example_stack_passes(policy: str, stack: list[Declared]) -> None:
    assert messages(policy, stack) == []


@pytest.mark.parametrize("slice_id", [PLATFORM_SLICE, *(f"client-{c}" for c in (ACME, GLOBEX, INITECH))])
def test_every_slice_passes_on_its_own(slice_id: str) -> None:
    """Each stack of the split layout (the platform, one per client) passes every policy by itself."""
    declared = declare_example(REPO / "roster.yaml", slice_id)
    assert declared
    assert {policy: messages(policy, declared) for policy in POLICIES} == {policy: [] for policy in POLICIES}


@pytest.mark.parametrize(("policy", "breakage", "expected"), FAILING, ids=[b.__name__ for _, b, _ in FAILING])
def test_broken_stack_fails(policy: str, breakage: Breakage, expected: str, stack: list[Declared]) -> None:
    found = messages(policy, breakage(stack))
    assert len(found) == 1, found
    assert expected in found[0]
    assert "Fix: " in found[0]


@pytest.mark.parametrize(("policy", "breakage", "expected"), FAILING, ids=[b.__name__ for _, b, _ in FAILING])
def test_breakage_trips_only_its_own_rule(
    policy: str, breakage: Breakage, expected: str, stack: list[Declared]
) -> None:
    """A failing case breaks one thing: no other policy (bar the overlaps listed here) notices."""
    overlaps = {
        (MAX_SIZE, "huge_volume"): {QUOTA_COVERS},  # 412Gi more than the quota's storage
        (GUARDRAILS, "default_deny_with_a_rule"): {ISOLATION},  # a rule without `to` reaches the metadata address
        (SECURITY, "root_container"): {HIGH_IDS},  # UID 0 is below 10001 too
        (IMAGES, "latest_image"): {DIGESTS},  # neither a fixed tag nor a digest
        (IMAGES, "untagged_image"): {DIGESTS},
    }
    tripped = {name for name, _ in check_all(breakage(stack))}
    assert tripped == {policy} | overlaps.get((policy, breakage.__name__), set())


@pytest.mark.parametrize("type_", WORKLOADS)
def test_container_rules_cover_every_workload_kind(type_: str, stack: list[Declared]) -> None:
    """The sandbox pod as a Pod, Deployment, ..., CronJob passes; break its container and each kind fails."""
    workload = as_workload(find(stack, STS, f"sandbox-{GRACE}", ns(ACME)), type_)
    for policy in (
        RESOURCES,
        SECURITY,
        IMAGES,
        API_KEY_ENV,
        READINESS,
        DIGESTS,
        PULL_ALWAYS,
        HIGH_IDS,
        SECRETS_AS_FILES,
    ):
        assert check_resource(policy, workload) == [], policy
    broken = workload.edited()
    container = broken.container("code-server")
    container["image"] = "nginx"
    container["securityContext"]["allowPrivilegeEscalation"] = True
    del container["resources"]["limits"]
    container["env"].append({"name": "OPENAI_API_KEY", "value": "sk-not-real"})
    kind = type_.rsplit(":", 1)[-1]
    for policy, expected in (
        (RESOURCES, "sets no limits.cpu, limits.memory"),
        (SECURITY, "does not set allowPrivilegeEscalation: false"),
        (IMAGES, "image 'nginx' is not from an allowed registry (registry.platform.com/) and has no tag"),
        (API_KEY_ENV, "sets OPENAI_API_KEY to a literal value"),
    ):
        [message] = check_resource(policy, broken)
        assert message.startswith(f"{kind} {ns(ACME)}/sandbox-{GRACE}: container 'code-server' ")
        assert expected in message


def test_thresholds_come_from_the_policy_config(stack: list[Declared]) -> None:
    sts = find(stack, STS, f"sandbox-{GRACE}", ns(ACME))
    found = check_resource(IMAGES, sts, {"allowedRegistries": ["registry.example.com"]})
    assert len(found) == 3  # prepare-home, gemini-cli, code-server
    assert "'registry.platform.com/mirror/code-server:4.105.1@sha256:" in found[2]
    assert "is not from an allowed registry" in found[2]
    assert check_resource(IMAGES, sts, {"allowedRegistries": ["registry.platform.com/", "registry.example.com"]}) == []
    pvc = find(stack, PVC, f"workspace-{GRACE}", ns(ACME))  # 100Gi on fast-ssd
    assert check_resource(MAX_SIZE, pvc, {"maxStorage": "100Gi"}) == []
    assert "more than the maximum 99Gi" in check_resource(MAX_SIZE, pvc, {"maxStorage": "99Gi"})[0]
    assert "allowed: standard" in check_resource(STORAGE_CLASS, pvc, {"storageClasses": ["standard"]})[0]
    smaller = {"premium": {"requests": {"cpu": "2", "memory": "8Gi"}, "gpu": True}}
    assert "requests.cpu 4 exceeds the tier's 2" in check_resource(TIER, sts, {"tiers": smaller})[0]


def test_a_secret_without_an_api_key_may_be_plain(stack: list[Declared]) -> None:
    secret = find(stack, SECRET, "gemini-api-key", ns(ACME))
    other = Declared(SECRET, "settings", secret.urn + "-settings", {**secret.wire, "metadata": {"name": "settings"}})
    other.wire["stringData"] = {"theme": "dark"}
    assert check_resource(API_KEY_SECRET, other) == []
    other.wire["stringData"] = {"OPENAI_API_KEY": "sk-not-real"}
    assert "stringData.OPENAI_API_KEY is plain text" in check_resource(API_KEY_SECRET, other)[0]


def test_stack_violations_are_attached_to_the_resource_to_fix(stack: list[Declared]) -> None:
    [(urn, _)] = check_stack(QUOTA_COVERS, quota_too_small(stack))
    assert urn == find(stack, QUOTA, "sandbox-quota", ns(ACME)).urn
    [(urn, _)] = check_stack(SANDBOX_COMPLETE, no_home_volume(stack))
    assert urn == find(stack, SANDBOX, f"sandbox-{GRACE}", ns(ACME)).urn


def test_platform_namespace_may_admit_every_client(stack: list[Declared]) -> None:
    """Isolation is between clients: the platform's own policies may admit traffic from all of them."""
    acme = find(stack, NETPOL, "sandbox-isolation", ns(ACME))
    wire = {**acme.edited().wire, "metadata": {"name": "from-sandboxes", "namespace": "platform-system"}}
    wire["spec"]["ingress"] = [
        {"from": [{"namespaceSelector": {"matchLabels": {"app.kubernetes.io/part-of": "sandbox-infra"}}}]}
    ]
    platform_policy = Declared(NETPOL, "platform-from-sandboxes", acme.urn + "-platform", wire)
    assert check_stack(ISOLATION, [*stack, platform_policy]) == []
