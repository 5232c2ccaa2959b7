"""A client's access to the platform's Harbor: the image pull Secret its sandbox pods use.

The Secret is ``kubernetes.io/dockerconfigjson`` for the ``registryHost`` with the robot account
``registryPullUser``; its token is the ``registryPullToken`` Pulumi secret and stays a secret Output (in
state, in previews) end to end. The client's ``sandbox`` ServiceAccount lists it (tenancy.py), so every
sandbox pod pulls its per-user image ``gemini-cli-user-<freelancer-id>`` with it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.plan import PullSecretPlan, TenantPlan


def docker_config(plan: PullSecretPlan, token: str) -> str:
    """The ``.dockerconfigjson`` document for one registry and one account."""
    auth = base64.b64encode(f"{plan.username}:{token}".encode()).decode()
    return json.dumps({"auths": {plan.registry_host: {"username": plan.username, "password": token, "auth": auth}}})


@dataclass(frozen=True)
class ClientRegistryAccessArgs:
    """Inputs of :class:`ClientRegistryAccess`."""

    plan: TenantPlan
    """The client's namespace and pull secret plan (which must be set)."""
    token: pulumi.Input[str]
    """The robot account's token (a secret Output)."""
    depends_on: list[pulumi.Resource]
    """Its ClientTenant (the namespace)."""


class ClientRegistryAccess(pulumi.ComponentResource):
    """The pull Secret of one client namespace."""

    def __init__(self, name: str, args: ClientRegistryAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:registry:ClientRegistryAccess", name, None, opts)
        plan = args.plan.pull_secret
        assert plan is not None, "declared only for a tenant with a pull secret plan"
        labels = naming.labels(
            name="client-registry-access",
            instance=args.plan.namespace,
            component="registry",
            client=args.plan.client_id,
        )
        metadata: k8s.meta.v1.ObjectMetaArgsDict = {
            "name": plan.name,
            "namespace": args.plan.namespace,
            "labels": labels,
            "annotations": naming.object_annotations(force=True),
        }
        token: pulumi.Output[str] = pulumi.Output.secret(args.token)
        config = token.apply(lambda value: docker_config(plan, value))  # still a secret: derived from one
        k8s.core.v1.Secret(
            f"{name}-pull-secret",
            metadata=metadata,
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": config},
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=args.depends_on, additional_secret_outputs=["data", "stringData"]
            ),
        )
        self.register_outputs({"secret": plan.name})
