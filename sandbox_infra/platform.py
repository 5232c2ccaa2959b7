"""The shared platform layer: the ``platform-system`` namespace and the ``sandboxes.platform.com`` CRD.

The CRD is the seed's (section 3.2) plus what an operator and the people running it need: a ``state``
field (active / suspended / archived), a status subresource the operator writes, and printer columns so
``kubectl get sandboxes`` answers "whose, for whom, which tier, running or not" at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.plan import PlatformPlan
from sandbox_infra.roster import SandboxState
from sandbox_infra.tiers import Tier

GROUP = "platform.com"
VERSION = "v1"
KIND = "Sandbox"
PLURAL = "sandboxes"
API_VERSION = f"{GROUP}/{VERSION}"


def pod_security_labels(level: str, version: str) -> dict[str, str]:
    """Pod Security Admission labels: enforce, audit and warn at one level, pinned to one version."""
    labels: dict[str, str] = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = level
        labels[f"pod-security.kubernetes.io/{mode}-version"] = version
    return labels


def _sandbox_schema() -> dict[str, Any]:
    quantity = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"}
    uuid = {"type": "string", "format": "uuid"}
    return {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["freelancerId", "clientId", "resourceTier", "state"],
                "properties": {
                    "freelancerId": uuid,
                    "clientId": uuid,
                    "resourceTier": {"type": "string", "enum": [t.value for t in Tier]},
                    "customImage": {"type": "string"},
                    "gpu": {"type": "boolean"},
                    "state": {"type": "string", "enum": [s.value for s in SandboxState]},
                    "persistence": {
                        "type": "object",
                        "properties": {"workspaceSize": quantity, "homeSize": quantity},
                    },
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "phase": {"type": "string", "enum": ["Pending", "Running", "Suspended", "Archived", "Failed"]},
                    "podName": {"type": "string"},
                    "observedGeneration": {"type": "integer", "format": "int64"},
                    "conditions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "status"],
                            "properties": {
                                "type": {"type": "string"},
                                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                                "reason": {"type": "string"},
                                "message": {"type": "string"},
                                "lastTransitionTime": {"type": "string", "format": "date-time"},
                            },
                        },
                    },
                },
            },
        },
    }


@dataclass(frozen=True)
class PlatformArgs:
    """Inputs of :class:`Platform`."""

    plan: PlatformPlan
    """The platform namespace (client NetworkPolicies admit it) and its pinned Pod Security version."""


class Platform(pulumi.ComponentResource):
    """Cluster-wide pieces every client tenant relies on."""

    namespace: pulumi.Output[str]
    crd_name: pulumi.Output[str]

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:platform:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = naming.labels(name="platform", instance=name, component="platform")

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.plan.namespace,
                # Client NetworkPolicies select this namespace by the immutable kubernetes.io/metadata.name
                # label; `name` is kept for tools written against the seed's policy.
                "labels": {
                    **labels,
                    "name": args.plan.namespace,
                    **pod_security_labels("restricted", args.plan.pod_security_version),
                },
            },
            opts=child,
        )
        crd = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-sandbox-crd",
            metadata={"name": f"{PLURAL}.{GROUP}", "labels": labels},
            spec={
                "group": GROUP,
                "scope": "Namespaced",
                "names": {
                    "kind": KIND,
                    "plural": PLURAL,
                    "singular": "sandbox",
                    "listKind": "SandboxList",
                    "shortNames": ["sbx"],
                },
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": _sandbox_schema()},
                        "subresources": {"status": {}},
                        "additionalPrinterColumns": [
                            {"name": "Freelancer", "type": "string", "jsonPath": ".spec.freelancerId"},
                            {"name": "Tier", "type": "string", "jsonPath": ".spec.resourceTier"},
                            {"name": "State", "type": "string", "jsonPath": ".spec.state"},
                            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        ],
                    }
                ],
            },
            # Deleting the CRD would delete every Sandbox object in the cluster.
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.namespace = ns.metadata.name
        self.crd_name = crd.metadata.name
        self.crd = crd
        self.register_outputs({"namespace": self.namespace, "crd": self.crd_name})
