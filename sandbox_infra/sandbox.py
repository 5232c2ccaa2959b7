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

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming
from sandbox_infra.plan import SandboxPlan
from sandbox_infra.platform import API_VERSION, KIND
from sandbox_infra.roster import SandboxState

USER_ID = 10001
"""The sandbox user of every container. Above 10000, so it is no host account's UID if a container ever
escapes (Kubernetes hardening guides and scanners ask for > 10000); the images run as any UID."""
GROUP_ID = 10001
"""Its group, also the pod's fsGroup: the volumes and the API key file belong to it."""
HOME = "/home/sandbox"
WORKSPACE = "/workspace"
CODE_SERVER_PORT = 8080
PULL_POLICY = "Always"
"""Every start asks the registry for the image: with digests this is a manifest check, not a download, and a
node never runs an image its pull secret no longer grants."""
API_KEY_FILE = f"{HOME}/.gemini/.env"
"""Gemini CLI reads ``GEMINI_API_KEY`` from ``~/.gemini/.env``: the key arrives as this read-only file (mode
0400 in the pod spec) rather than an environment variable, so it is in no pod spec env and no ``/proc/*/environ``."""
API_KEY_FILE_MODE = 0o400
SKIP_AWAIT = "pulumi.com/skipAwait"


@dataclass(frozen=True)
class FreelancerSandboxArgs:
    """Inputs of :class:`FreelancerSandbox`."""

    plan: SandboxPlan
    """The sandbox's tier budget, images, volumes and state (see :mod:`sandbox_infra.plan`)."""
    namespace: pulumi.Input[str]
    """The client's namespace (an output of its ClientTenant, so the namespace exists first)."""
    depends_on: list[pulumi.Resource]
    """Resources the compute must wait for (the namespace quota and the API key Secret)."""


def _restricted_container_security() -> k8s.core.v1.SecurityContextArgsDict:
    """What Pod Security ``restricted`` requires of every container, plus a read-only root filesystem."""
    return {
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["ALL"]},
        "read_only_root_filesystem": True,
        "run_as_non_root": True,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def _metadata(
    name: str, namespace: pulumi.Input[str], labels: dict[str, str], *, force: bool = True, await_ready: bool = True
) -> k8s.meta.v1.ObjectMetaArgsDict:
    """Metadata of one of the sandbox's objects in the client's namespace (``force``: see
    :func:`naming.object_annotations`; volumes are not forced). ``await_ready=False``: the provider does not
    wait for the object after applying it (see the Service)."""
    annotations = naming.object_annotations(force=force)
    if not await_ready:
        annotations[SKIP_AWAIT] = "true"
    return {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}


def _volume_mounts(*, scratch: bool) -> list[k8s.core.v1.VolumeMountArgsDict]:
    """Both PVCs; with ``scratch``, also the writable ``/tmp`` the long-running containers need (their root
    filesystem is read-only)."""
    mounts: list[k8s.core.v1.VolumeMountArgsDict] = [
        {"name": "workspace", "mount_path": WORKSPACE},
        {"name": "home", "mount_path": HOME},
    ]
    if scratch:
        mounts.append({"name": "tmp", "mount_path": "/tmp"})
    return mounts


def _prepare_home(plan: SandboxPlan) -> k8s.core.v1.ContainerArgsDict:
    """Init container: creates the tools' directories in the home volume before either tool starts (and so
    before the API key file is mounted into ``~/.gemini``, which must then already be the sandbox user's)."""
    return {
        "name": "prepare-home",
        "image": plan.gemini_cli_image,
        "image_pull_policy": PULL_POLICY,
        "command": ["sh", "-c", f"mkdir -p {HOME}/.gemini {HOME}/.config {HOME}/.local/share/code-server"],
        "resources": plan.resources.init.to_k8s(),
        "security_context": _restricted_container_security(),
        "volume_mounts": _volume_mounts(scratch=False),
    }


READINESS_CHECK = f"command -v gemini >/dev/null && test -w {HOME} && test -w {WORKSPACE} && test -r {API_KEY_FILE}"
"""Ready = someone who execs in can work: the CLI is installed, home and workspace are writable, the key is
readable. A terminal container serves no port, so this is what "ready" means for it; it costs a few stat calls."""


def _gemini_cli(plan: SandboxPlan) -> k8s.core.v1.ContainerArgsDict:
    """gemini-cli: idles until someone execs in; the API key is the client's Secret mounted as ``~/.gemini/.env``."""
    return {
        "name": "gemini-cli",
        "image": plan.gemini_cli_image,
        "image_pull_policy": PULL_POLICY,
        "command": ["sleep", "infinity"],
        "working_dir": WORKSPACE,
        "env": [{"name": "HOME", "value": HOME}],
        "resources": plan.resources.gemini_cli.to_k8s(),
        "security_context": _restricted_container_security(),
        "volume_mounts": [
            *_volume_mounts(scratch=True),
            # One file inside the home volume (subPath), so the rest of ~/.gemini stays the freelancer's.
            {"name": "gemini-env", "mount_path": API_KEY_FILE, "sub_path": ".env", "read_only": True},
        ],
        # `exec_` is the SDK's name for the API's `exec`; it goes on the wire as `exec`.
        "readiness_probe": {
            "exec_": {"command": ["sh", "-c", READINESS_CHECK]},
            "period_seconds": 10,
            "timeout_seconds": 5,
        },
        "liveness_probe": {"exec_": {"command": ["test", "-w", WORKSPACE]}, "period_seconds": 30},
        "lifecycle": {"pre_stop": {"exec_": {"command": ["sh", "-c", "sync"]}}},
    }


def _code_server(plan: SandboxPlan) -> k8s.core.v1.ContainerArgsDict:
    """code-server: the browser IDE on the workspace, served on the ``http`` port the Service targets."""
    return {
        "name": "code-server",
        "image": plan.code_server_image,
        "image_pull_policy": PULL_POLICY,
        "args": [f"--bind-addr=0.0.0.0:{CODE_SERVER_PORT}", "--auth=none", "--disable-telemetry", WORKSPACE],
        "env": [{"name": "HOME", "value": HOME}],
        "ports": [{"name": "http", "container_port": CODE_SERVER_PORT, "protocol": "TCP"}],
        "resources": plan.resources.code_server.to_k8s(),
        "security_context": _restricted_container_security(),
        "volume_mounts": _volume_mounts(scratch=True),
        "readiness_probe": {"http_get": {"path": "/healthz", "port": "http"}, "period_seconds": 10},
        "liveness_probe": {
            "http_get": {"path": "/healthz", "port": "http"},
            "initial_delay_seconds": 30,
            "period_seconds": 30,
        },
        "lifecycle": {"pre_stop": {"exec_": {"command": ["sh", "-c", "sleep 2"]}}},
    }


def _pod_spec(plan: SandboxPlan) -> k8s.core.v1.PodSpecArgsDict:
    """The sandbox pod: no API token, no service links, the sandbox user everywhere, both PVCs, a bounded
    scratch volume, and the API key file (owned by the sandbox group through ``fsGroup``)."""
    return {
        "service_account_name": naming.SANDBOX_SERVICE_ACCOUNT,
        "automount_service_account_token": False,
        "enable_service_links": False,
        "termination_grace_period_seconds": 30,
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": USER_ID,
            "run_as_group": GROUP_ID,
            "fs_group": GROUP_ID,
            "fs_group_change_policy": "OnRootMismatch",
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "init_containers": [_prepare_home(plan)],
        "containers": [_gemini_cli(plan), _code_server(plan)],
        "volumes": [
            {"name": "workspace", "persistent_volume_claim": {"claim_name": plan.workspace.name}},
            {"name": "home", "persistent_volume_claim": {"claim_name": plan.home.name}},
            {"name": "tmp", "empty_dir": {"size_limit": "1Gi"}},
            {
                "name": "gemini-env",
                "secret": {
                    "secret_name": naming.API_KEY_SECRET,
                    "default_mode": API_KEY_FILE_MODE,
                    "items": [{"key": naming.API_KEY_SECRET_KEY, "path": ".env", "mode": API_KEY_FILE_MODE}],
                },
            },
        ],
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
            name=naming.SANDBOX_APP,
            instance=sandbox_name,
            component="sandbox",
            client=plan.client_id,
            freelancer=fid,
            tier=plan.tier.value,
        )
        # The volumes wait for the tenant too: a new sandbox's claims must not reach the API server before
        # the quota that admits them has grown (found by tests/integration/test_orchestrator.py).
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True, depends_on=args.depends_on)

        volumes = {}
        for volume, spec in (("workspace", plan.workspace), ("home", plan.home)):
            claim: k8s.core.v1.PersistentVolumeClaimSpecArgsDict = {
                "access_modes": ["ReadWriteOnce"],
                "storage_class_name": spec.storage_class,
                "resources": {"requests": {"storage": spec.size}},
            }
            volumes[volume] = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-{volume}",
                metadata=_metadata(spec.name, args.namespace, {**labels, naming.VOLUME_LABEL: volume}, force=False),
                spec=claim,
                opts=keep,
            )

        compute_opts = pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *volumes.values()])
        self.statefulset_name = None
        if plan.state is not SandboxState.ARCHIVED:
            service: k8s.core.v1.ServiceSpecArgsDict = {
                "cluster_ip": "None",
                "selector": naming.sandbox_selector(fid),
                "ports": [{"name": "http", "port": CODE_SERVER_PORT, "target_port": "http"}],
            }
            # No await for this headless Service: the provider's Service await returns the object as its
            # watch cache last saw it, which after an update can be the old one, and the state then holds
            # stale labels that every later preview shows as an update (found by the crash soak, about one
            # tier change in ten). Without the await the state gets the apply's own answer; the StatefulSet
            # still waits for its pod, which is what the Service's await waited for.
            k8s.core.v1.Service(
                f"{name}-service",
                metadata=_metadata(sandbox_name, args.namespace, labels, await_ready=False),
                spec=service,
                opts=pulumi.ResourceOptions(parent=self),
            )
            statefulset = k8s.apps.v1.StatefulSet(
                f"{name}-statefulset",
                metadata=_metadata(sandbox_name, args.namespace, labels),
                spec=self._statefulset_spec(plan, labels),
                opts=compute_opts,
            )
            self.statefulset_name = statefulset.metadata.name

        # A plain dict on purpose: these are the Sandbox CRD's own fields (camelCase, as _sandbox_schema in
        # platform.py declares them), the SDK has no type for them, and it sends an untyped spec as written.
        sandbox_spec: dict[str, object] = {
            "freelancerId": str(fid),
            "clientId": str(plan.client_id),
            "resourceTier": plan.tier.value,
            "state": plan.state.value,
            "gpu": plan.gpu,
            **({"customImage": plan.gemini_cli_image} if plan.custom_image_tag else {}),
            "persistence": {"workspaceSize": plan.workspace.size, "homeSize": plan.home.size},
        }
        k8s.apiextensions.CustomResource(
            f"{name}-sandbox",
            api_version=API_VERSION,
            kind=KIND,
            metadata=_metadata(sandbox_name, args.namespace, labels),
            spec=sandbox_spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.register_outputs({"statefulset": self.statefulset_name, "state": plan.state.value})

    @staticmethod
    def _statefulset_spec(plan: SandboxPlan, labels: dict[str, str]) -> k8s.apps.v1.StatefulSetSpecArgsDict:
        """One replica while active, none while suspended; the headless Service names its pod."""
        return {
            "replicas": 1 if plan.state is SandboxState.ACTIVE else 0,
            "service_name": plan.name,
            "selector": {"match_labels": naming.sandbox_selector(plan.freelancer_id)},
            # Never more than one pod per sandbox: its volumes are ReadWriteOnce.
            "pod_management_policy": "OrderedReady",
            "update_strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(plan)},
        }
