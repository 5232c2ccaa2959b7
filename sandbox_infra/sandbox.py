"""One freelancer's sandbox for one client: volumes that are never lost, and compute that comes and goes.

- Workspace and home PVCs are separate resources (not ``volumeClaimTemplates``, which a StatefulSet
  owns and Pulumi cannot protect), each ``protect``-ed and ``retain_on_delete``: no roster change and no
  ``pulumi destroy`` deletes a freelancer's data.
- A StatefulSet of one replica runs gemini-cli and code-server side by side (seed section 1.2), with
  the tier budget split between them so the whole pod fits the budget; ``suspended`` scales it to zero
  and ``archived`` removes it, keeping the volumes either way. There is no HorizontalPodAutoscaler: a
  sandbox is one person's machine, and scaling it out would only create pods without volumes.
- A headless Service names the pod for the platform's router, and a ``Sandbox`` object mirrors the
  roster entry for the platform's operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.plan import SandboxPlan
from sandbox_infra.platform import API_VERSION, KIND
from sandbox_infra.roster import SandboxState

USER_ID = 1000
HOME = "/home/sandbox"
WORKSPACE = "/workspace"
CODE_SERVER_PORT = 8080


@dataclass(frozen=True)
class FreelancerSandboxArgs:
    """Inputs of :class:`FreelancerSandbox`."""

    plan: SandboxPlan
    """The sandbox's tier budget, images, volumes and state (see :mod:`sandbox_infra.plan`)."""
    namespace: pulumi.Input[str]
    """The client's namespace (an output of its ClientTenant, so the namespace exists first)."""
    depends_on: list[pulumi.Resource]
    """Resources the compute must wait for (the namespace quota and the API key Secret)."""


def _restricted_container_security() -> dict[str, Any]:
    """What Pod Security ``restricted`` requires of every container, plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


class FreelancerSandbox(pulumi.ComponentResource):
    """Volumes, compute, service and Sandbox object of one freelancer for one client."""

    statefulset_name: pulumi.Output[str] | None

    def __init__(self, name: str, args: FreelancerSandboxArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:sandbox:FreelancerSandbox", name, None, opts)
        plan = args.plan
        fid = plan.freelancer_id
        sandbox_name = plan.name
        labels = naming.labels(
            name="sandbox",
            instance=sandbox_name,
            component="sandbox",
            client=plan.client_id,
            freelancer=fid,
            tier=plan.tier.value,
        )
        meta: dict[str, Any] = {"namespace": args.namespace, "labels": labels}
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)

        volumes = {}
        for volume, spec in (("workspace", plan.workspace), ("home", plan.home)):
            volumes[volume] = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-{volume}",
                metadata={**meta, "name": spec.name, "labels": {**labels, "platform.com/volume": volume}},
                spec={
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": spec.storage_class,
                    "resources": {"requests": {"storage": spec.size}},
                },
                opts=keep,
            )

        compute_opts = pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *volumes.values()])
        self.statefulset_name = None
        if plan.state is not SandboxState.ARCHIVED:
            k8s.core.v1.Service(
                f"{name}-service",
                metadata={**meta, "name": sandbox_name},
                spec={
                    "clusterIP": "None",
                    "selector": naming.sandbox_selector(fid),
                    "ports": [{"name": "http", "port": CODE_SERVER_PORT, "targetPort": "http"}],
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            statefulset = k8s.apps.v1.StatefulSet(
                f"{name}-statefulset",
                metadata={**meta, "name": sandbox_name},
                spec=self._statefulset_spec(plan, labels),
                opts=compute_opts,
            )
            self.statefulset_name = statefulset.metadata.name

        k8s.apiextensions.CustomResource(
            f"{name}-sandbox",
            api_version=API_VERSION,
            kind=KIND,
            metadata={**meta, "name": sandbox_name},
            spec={
                "freelancerId": str(fid),
                "clientId": str(plan.client_id),
                "resourceTier": plan.tier.value,
                "state": plan.state.value,
                "gpu": plan.gpu,
                **({"customImage": plan.gemini_cli_image} if plan.custom_image_tag else {}),
                "persistence": {"workspaceSize": plan.workspace.size, "homeSize": plan.home.size},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.register_outputs({"statefulset": self.statefulset_name, "state": plan.state.value})

    @staticmethod
    def _statefulset_spec(plan: SandboxPlan, labels: dict[str, str]) -> dict[str, Any]:
        fid, sandbox_name = plan.freelancer_id, plan.name
        mounts = [{"name": "workspace", "mountPath": WORKSPACE}, {"name": "home", "mountPath": HOME}]
        scratch = [{"name": "tmp", "mountPath": "/tmp"}]
        return {
            "replicas": 1 if plan.state is SandboxState.ACTIVE else 0,
            "serviceName": sandbox_name,
            "selector": {"matchLabels": naming.sandbox_selector(fid)},
            # Never more than one pod per sandbox: its volumes are ReadWriteOnce.
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": naming.SANDBOX_SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": USER_ID,
                        "runAsGroup": USER_ID,
                        "fsGroup": USER_ID,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": "prepare-home",
                            "image": plan.gemini_cli_image,
                            "command": [
                                "sh",
                                "-c",
                                f"mkdir -p {HOME}/.gemini {HOME}/.config {HOME}/.local/share/code-server",
                            ],
                            "resources": plan.resources.init.to_k8s(),
                            "securityContext": _restricted_container_security(),
                            "volumeMounts": mounts,
                        }
                    ],
                    "containers": [
                        {
                            "name": "gemini-cli",
                            "image": plan.gemini_cli_image,
                            "command": ["sleep", "infinity"],
                            "workingDir": WORKSPACE,
                            "env": [
                                {"name": "HOME", "value": HOME},
                                {
                                    "name": "GEMINI_API_KEY",
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": naming.API_KEY_SECRET,
                                            "key": naming.API_KEY_SECRET_KEY,
                                        }
                                    },
                                },
                            ],
                            "resources": plan.resources.gemini_cli.to_k8s(),
                            "securityContext": _restricted_container_security(),
                            "volumeMounts": mounts + scratch,
                            "livenessProbe": {"exec": {"command": ["test", "-w", WORKSPACE]}, "periodSeconds": 30},
                            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sync"]}}},
                        },
                        {
                            "name": "code-server",
                            "image": plan.code_server_image,
                            "args": [
                                f"--bind-addr=0.0.0.0:{CODE_SERVER_PORT}",
                                "--auth=none",
                                "--disable-telemetry",
                                WORKSPACE,
                            ],
                            "env": [{"name": "HOME", "value": HOME}],
                            "ports": [{"name": "http", "containerPort": CODE_SERVER_PORT, "protocol": "TCP"}],
                            "resources": plan.resources.code_server.to_k8s(),
                            "securityContext": _restricted_container_security(),
                            "volumeMounts": mounts + scratch,
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "initialDelaySeconds": 30,
                                "periodSeconds": 30,
                            },
                            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 2"]}}},
                        },
                    ],
                    "volumes": [
                        {"name": "workspace", "persistentVolumeClaim": {"claimName": plan.workspace.name}},
                        {"name": "home", "persistentVolumeClaim": {"claimName": plan.home.name}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        }
