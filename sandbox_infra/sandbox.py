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
from uuid import UUID

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.platform import API_VERSION, KIND
from sandbox_infra.roster import SandboxState
from sandbox_infra.tiers import ContainerResources

USER_ID = 1000
HOME = "/home/sandbox"
WORKSPACE = "/workspace"
CODE_SERVER_PORT = 8080


@dataclass(frozen=True)
class VolumeSpec:
    """A PersistentVolumeClaim's size and StorageClass."""

    size: str
    storage_class: str


@dataclass(frozen=True)
class FreelancerSandboxArgs:
    """Inputs of :class:`FreelancerSandbox`."""

    freelancer_id: UUID
    """Immutable freelancer id; every name below derives from it."""
    client_id: UUID
    """Client whose namespace the sandbox lives in."""
    namespace: pulumi.Input[str]
    """That client's namespace (an output of its ClientTenant, so the namespace exists first)."""
    tier: str
    """Tier name, for labels and the Sandbox object."""
    resources: ContainerResources
    """The tier budget, already split between the containers."""
    state: SandboxState
    """active (1 replica), suspended (0 replicas) or archived (no compute)."""
    gemini_cli_image: str
    """Full, pinned image reference of the gemini-cli container."""
    custom_image_tag: str | None
    """The roster's per-user image tag, if any (mirrored into the Sandbox object)."""
    code_server_image: str
    """Full, pinned image reference of code-server."""
    workspace: VolumeSpec
    home: VolumeSpec
    gpu: bool
    """Whether the pod gets a GPU (already counted in ``resources``)."""
    depends_on: list[pulumi.Resource]
    """Resources the compute must wait for (the namespace quota, the API key Secret, the CRD)."""


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
        fid = args.freelancer_id
        sandbox_name = naming.sandbox(fid)
        labels = naming.labels(
            name="sandbox",
            instance=sandbox_name,
            component="sandbox",
            client=args.client_id,
            freelancer=fid,
            tier=args.tier,
        )
        meta: dict[str, Any] = {"namespace": args.namespace, "labels": labels}
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)

        volumes = {}
        for volume, spec, pvc_name in (
            ("workspace", args.workspace, naming.workspace_pvc(fid)),
            ("home", args.home, naming.home_pvc(fid)),
        ):
            volumes[volume] = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-{volume}",
                metadata={**meta, "name": pvc_name, "labels": {**labels, "platform.com/volume": volume}},
                spec={
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": spec.storage_class,
                    "resources": {"requests": {"storage": spec.size}},
                },
                opts=keep,
            )

        compute_opts = pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *volumes.values()])
        self.statefulset_name = None
        if args.state is not SandboxState.ARCHIVED:
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
                spec=self._statefulset_spec(args, sandbox_name, labels),
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
                "clientId": str(args.client_id),
                "resourceTier": args.tier,
                "state": args.state.value,
                "gpu": args.gpu,
                **({"customImage": args.gemini_cli_image} if args.custom_image_tag else {}),
                "persistence": {"workspaceSize": args.workspace.size, "homeSize": args.home.size},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.register_outputs({"statefulset": self.statefulset_name, "state": args.state.value})

    @staticmethod
    def _statefulset_spec(args: FreelancerSandboxArgs, sandbox_name: str, labels: dict[str, str]) -> dict[str, Any]:
        fid = args.freelancer_id
        mounts = [{"name": "workspace", "mountPath": WORKSPACE}, {"name": "home", "mountPath": HOME}]
        scratch = [{"name": "tmp", "mountPath": "/tmp"}]
        return {
            "replicas": 1 if args.state is SandboxState.ACTIVE else 0,
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
                            "image": args.gemini_cli_image,
                            "command": [
                                "sh",
                                "-c",
                                f"mkdir -p {HOME}/.gemini {HOME}/.config {HOME}/.local/share/code-server",
                            ],
                            "resources": args.resources.init.to_k8s(),
                            "securityContext": _restricted_container_security(),
                            "volumeMounts": mounts,
                        }
                    ],
                    "containers": [
                        {
                            "name": "gemini-cli",
                            "image": args.gemini_cli_image,
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
                            "resources": args.resources.gemini_cli.to_k8s(),
                            "securityContext": _restricted_container_security(),
                            "volumeMounts": mounts + scratch,
                            "livenessProbe": {"exec": {"command": ["test", "-w", WORKSPACE]}, "periodSeconds": 30},
                            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sync"]}}},
                        },
                        {
                            "name": "code-server",
                            "image": args.code_server_image,
                            "args": [
                                f"--bind-addr=0.0.0.0:{CODE_SERVER_PORT}",
                                "--auth=none",
                                "--disable-telemetry",
                                WORKSPACE,
                            ],
                            "env": [{"name": "HOME", "value": HOME}],
                            "ports": [{"name": "http", "containerPort": CODE_SERVER_PORT, "protocol": "TCP"}],
                            "resources": args.resources.code_server.to_k8s(),
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
                        {"name": "workspace", "persistentVolumeClaim": {"claimName": naming.workspace_pvc(fid)}},
                        {"name": "home", "persistentVolumeClaim": {"claimName": naming.home_pvc(fid)}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        }
