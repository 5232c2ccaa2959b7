"""The shared platform layer: the ``platform-system`` namespace and the ``sandboxes.platform.com`` CRD.

The CRD is the seed's (section 3.2) plus what an operator and the people running it need: a ``state``
field (active / suspended / archived), a status subresource the operator writes, and printer columns so
``kubectl get sandboxes`` answers "whose, for whom, which tier, running or not" at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.namespaces import declare_namespace
from sandbox_infra.plan import PlatformPlan
from sandbox_infra.roster import SandboxState
from sandbox_infra.tiers import Tier

GROUP = naming.CRD_GROUP
VERSION = naming.CRD_VERSION
KIND = naming.CRD_KIND
PLURAL = naming.CRD_PLURAL
API_VERSION = f"{GROUP}/{VERSION}"


def pod_security_labels(level: str, version: str) -> dict[str, str]:
    """Pod Security Admission labels: enforce, audit and warn at one level, pinned to one version."""
    labels: dict[str, str] = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = level
        labels[f"pod-security.kubernetes.io/{mode}-version"] = version
    return labels


def _sandbox_schema() -> k8s.apiextensions.v1.JSONSchemaPropsArgsDict:
    """The Sandbox object's OpenAPI schema, typed as JSONSchemaProps so every schema keyword is checked.

    The schema's *keywords* (``type``, ``properties``, ``required``...) are typed; the property *names* under
    ``properties`` are map keys, the Sandbox's own camelCase fields, which the SDK passes through as written.
    """
    quantity: k8s.apiextensions.v1.JSONSchemaPropsArgsDict = {
        "type": "string",
        "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$",
    }
    uuid: k8s.apiextensions.v1.JSONSchemaPropsArgsDict = {"type": "string", "format": "uuid"}
    condition: k8s.apiextensions.v1.JSONSchemaPropsArgsDict = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
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
                    "conditions": {"type": "array", "items": condition},
                },
            },
        },
    }


def _sandbox_crd_spec() -> k8s.apiextensions.v1.CustomResourceDefinitionSpecArgsDict:
    """The ``sandboxes.platform.com`` CRD: one served and stored version, a status subresource the operator
    writes, and the printer columns ``kubectl get sandboxes`` shows."""
    columns: list[k8s.apiextensions.v1.CustomResourceColumnDefinitionArgsDict] = [
        {"name": "Freelancer", "type": "string", "json_path": ".spec.freelancerId"},
        {"name": "Tier", "type": "string", "json_path": ".spec.resourceTier"},
        {"name": "State", "type": "string", "json_path": ".spec.state"},
        {"name": "Phase", "type": "string", "json_path": ".status.phase"},
        {"name": "Age", "type": "date", "json_path": ".metadata.creationTimestamp"},
    ]
    return {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": KIND,
            "plural": PLURAL,
            "singular": "sandbox",
            "list_kind": "SandboxList",
            "short_names": ["sbx"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"open_apiv3_schema": _sandbox_schema()},
                # The status subresource takes no settings: an empty object switches it on.
                "subresources": {"status": {}},
                "additional_printer_columns": columns,
            }
        ],
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

        # Client NetworkPolicies select this namespace by the immutable kubernetes.io/metadata.name label;
        # `name` is kept for tools written against the seed's policy.
        ns_labels = {
            **labels,
            "name": args.plan.namespace,
            **pod_security_labels("restricted", args.plan.pod_security_version),
        }
        ns = declare_namespace(name, args.plan.namespace, ns_labels, child)
        crd_metadata: k8s.meta.v1.ObjectMetaArgsDict = {
            "name": f"{PLURAL}.{GROUP}",
            "labels": labels,
            "annotations": naming.object_annotations(force=True),
        }
        crd = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-sandbox-crd",
            metadata=crd_metadata,
            spec=_sandbox_crd_spec(),
            # Deleting the CRD would delete every Sandbox object in the cluster.
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.namespace = ns.metadata.name
        self.crd_name = crd.metadata.name
        self.crd = crd
        self.register_outputs({"namespace": self.namespace, "crd": self.crd_name})
