"""One client organization's tenancy: its namespace and everything that isolates and bounds it.

A namespace per client (seed section 1.1) with:
- Pod Security ``restricted``, pinned to a version, enforced (not just audited);
- a ResourceQuota that is the sum of the tier budgets of the client's sandboxes, and a LimitRange so a
  container declared without resources still gets some (and still counts against the quota);
- default-deny NetworkPolicies, then only what the seed allows (ingress from the platform, egress to the
  platform and to the internet on 80/443) plus DNS; private ranges and the cloud metadata address are
  carved out of the internet rule, so other tenants' pods are unreachable;
- a ServiceAccount for sandbox pods that mounts no token, and a Role for the platform's operator;
- the Gemini API key Secret, from Pulumi secret config, holding Gemini CLI's ``.env`` file (sandboxes mount it);
- the namespace's ``default`` ServiceAccount without an API token (see :mod:`sandbox_infra.namespaces`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.namespaces import declare_namespace
from sandbox_infra.plan import TenantPlan
from sandbox_infra.platform import GROUP, PLURAL, pod_security_labels


@dataclass(frozen=True)
class ClientTenantArgs:
    """Inputs of :class:`ClientTenant`."""

    plan: TenantPlan
    """The client's namespace, quota, network and RBAC settings (see :mod:`sandbox_infra.plan`)."""
    api_key: pulumi.Input[str] | None
    """Gemini API key (a secret Output); None when the client has no sandbox that needs one."""


def _metadata(name: str, namespace: str, labels: dict[str, str]) -> k8s.meta.v1.ObjectMetaArgsDict:
    """Metadata of one object in the client's namespace, labelled as part of its tenancy (the platform owns
    it outright: a hand edit is drift that the next refreshing update takes back)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": naming.object_annotations(force=True),
    }


class ClientTenant(pulumi.ComponentResource):
    """A client's namespace, quota, limits, network isolation, RBAC and API key."""

    namespace: pulumi.Output[str]
    quota: k8s.core.v1.ResourceQuota

    def __init__(self, name: str, args: ClientTenantArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:tenancy:ClientTenant", name, None, opts)
        plan = args.plan
        namespace = plan.namespace
        labels = naming.labels(name="client-tenant", instance=namespace, component="tenancy", client=plan.client_id)

        ns = declare_namespace(
            name,
            namespace,
            {**labels, **pod_security_labels("restricted", plan.pod_security_version), **dict(plan.mesh_labels)},
            # Deleting a namespace deletes every volume in it, whatever the PVCs' own options say:
            # offboarding a client is an explicit multi-step change (docs/offboarding.md).
            pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
            annotations={"platform.com/client-name": plan.client_name},
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])

        quota: k8s.core.v1.ResourceQuotaSpecArgsDict = {"hard": plan.quota.hard()}
        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota", metadata=_metadata("sandbox-quota", namespace, labels), spec=quota, opts=in_ns
        )
        limits: k8s.core.v1.LimitRangeSpecArgsDict = {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "500m", "memory": "512Mi"},
                    "default_request": {"cpu": "100m", "memory": "128Mi"},
                },
                {"type": "PersistentVolumeClaim", "max": {"storage": plan.max_volume_size}},
            ]
        }
        k8s.core.v1.LimitRange(
            f"{name}-limits", metadata=_metadata("sandbox-defaults", namespace, labels), spec=limits, opts=in_ns
        )
        self._network_policies(name, namespace, labels, plan, in_ns)
        self._rbac(name, namespace, labels, plan, in_ns)
        if args.api_key is not None:
            k8s.core.v1.Secret(
                f"{name}-gemini-api-key",
                metadata=_metadata(naming.API_KEY_SECRET, namespace, labels),
                type="Opaque",
                # Gemini CLI's .env file; built inside the secret Output, so the key never leaves it.
                string_data={
                    naming.API_KEY_SECRET_KEY: pulumi.Output.secret(args.api_key).apply(
                        lambda key: f"{naming.API_KEY_ENV_VAR}={key}\n"
                    )
                },
                opts=pulumi.ResourceOptions.merge(
                    in_ns, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])
                ),
            )
        self.namespace = ns.metadata.name
        self.register_outputs({"namespace": self.namespace})

    @staticmethod
    def _network_policies(
        name: str, namespace: str, labels: dict[str, str], plan: TenantPlan, opts: pulumi.ResourceOptions
    ) -> None:
        platform: k8s.networking.v1.NetworkPolicyPeerArgsDict = {
            "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": plan.platform_namespace}}
        }
        default_deny: k8s.networking.v1.NetworkPolicySpecArgsDict = {
            "pod_selector": {},
            "policy_types": ["Ingress", "Egress"],
        }
        allow_dns: k8s.networking.v1.NetworkPolicySpecArgsDict = {
            "pod_selector": {},
            "policy_types": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "pod_selector": {"match_labels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        }
        sandbox_isolation: k8s.networking.v1.NetworkPolicySpecArgsDict = {
            "pod_selector": {"match_labels": naming.SANDBOX_POD_SELECTOR},
            "policy_types": ["Ingress", "Egress"],
            # `from_` and `except_`: the SDK's names for the API's `from` and `except` (Python keywords).
            "ingress": [{"from_": [platform]}],
            "egress": [
                {"to": [platform]},
                {
                    "to": [{"ip_block": {"cidr": "0.0.0.0/0", "except_": list(plan.egress_denied_cidrs)}}],
                    "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}],
                },
            ],
        }
        for policy, spec in (
            ("default-deny", default_deny),
            ("allow-dns", allow_dns),
            ("sandbox-isolation", sandbox_isolation),
        ):
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy}", metadata=_metadata(policy, namespace, labels), spec=spec, opts=opts
            )

    @staticmethod
    def _rbac(
        name: str, namespace: str, labels: dict[str, str], plan: TenantPlan, opts: pulumi.ResourceOptions
    ) -> None:
        # Pods of this ServiceAccount pull with the client's registry Secret (registry.py declares it).
        pull_secrets: list[k8s.core.v1.LocalObjectReferenceArgsDict] = (
            [{"name": plan.pull_secret.name}] if plan.pull_secret is not None else []
        )
        k8s.core.v1.ServiceAccount(
            f"{name}-sandbox-sa",
            metadata=_metadata(naming.SANDBOX_SERVICE_ACCOUNT, namespace, labels),
            automount_service_account_token=False,
            image_pull_secrets=pull_secrets or None,
            opts=opts,
        )
        rules: list[k8s.rbac.v1.PolicyRuleArgsDict] = [
            {
                "api_groups": [GROUP],
                "resources": [PLURAL, f"{PLURAL}/status"],
                "verbs": ["get", "list", "watch", "update", "patch"],
            },
            {
                "api_groups": ["apps"],
                "resources": ["statefulsets", "statefulsets/scale"],
                "verbs": ["get", "list", "watch", "patch", "update"],
            },
            {
                "api_groups": [""],
                "resources": ["pods", "persistentvolumeclaims", "services", "events"],
                "verbs": ["get", "list", "watch"],
            },
            {"api_groups": [""], "resources": ["pods/exec", "pods/log"], "verbs": ["get", "create"]},
        ]
        role = k8s.rbac.v1.Role(
            f"{name}-operator-role", metadata=_metadata("sandbox-operator", namespace, labels), rules=rules, opts=opts
        )
        role_ref: k8s.rbac.v1.RoleRefArgsDict = {
            "api_group": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "sandbox-operator",
        }
        subjects: list[k8s.rbac.v1.SubjectArgsDict] = [
            {"kind": "ServiceAccount", "name": plan.controller_service_account, "namespace": plan.platform_namespace}
        ]
        k8s.rbac.v1.RoleBinding(
            f"{name}-operator-binding",
            metadata=_metadata("sandbox-operator", namespace, labels),
            role_ref=role_ref,
            subjects=subjects,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[role])),
        )
