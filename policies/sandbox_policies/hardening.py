"""Rules that keep the platform clean under a Kubernetes hardening scanner (docs/hardening.md).

One rule per finding the scanner (checkov) would report, so a change that undoes a fix fails the preview
before the scanner ever sees it: readiness probes, images by digest, pull policy ``Always``, UIDs and GIDs
above 10000, Secrets as files rather than environment variables, and every namespace's ``default``
ServiceAccount without an API token.
"""

from __future__ import annotations

from typing import Any

from sandbox_infra.images import has_digest
from sandbox_policies.model import (
    NAMESPACE,
    UNKNOWN,
    Resource,
    Violation,
    as_dict,
    as_list,
    containers,
    get,
)

MIN_ID = 10001
"""UIDs and GIDs below this may belong to accounts on the node (``/etc/login.defs`` allots up to 60000 to
people, but distributions start them at 1000): a container that escapes as one of them acts as that user."""
SERVICE_ACCOUNTS = frozenset({"kubernetes:core/v1:ServiceAccount", "kubernetes:core/v1:ServiceAccountPatch"})
DEFAULT_SERVICE_ACCOUNT = "default"
# Workloads whose pods run to completion: a readiness probe means nothing for them (the scanner agrees).
_RUN_TO_COMPLETION = frozenset({"Job", "CronJob"})

FIX_READINESS = (
    "Fix: give every long-running container a readinessProbe that says it can do its job (code-server: GET "
    "/healthz; gemini-cli, a terminal: an exec probe that the CLI is installed and home, workspace and key are usable)."
)
FIX_DIGEST = (
    "Fix: pin the image by digest, name:tag@sha256:<64 hex> (stack settings geminiCliTag and codeServerImage, "
    "the roster's image: TAG@sha256:DIGEST); `crane digest` or `docker buildx imagetools inspect` prints it."
)
FIX_PULL_POLICY = (
    "Fix: set imagePullPolicy: Always (with a digest the kubelet only checks the manifest, and a node never runs "
    "an image its pull credentials no longer grant)."
)
FIX_IDS = (
    f"Fix: run as runAsUser and runAsGroup of at least {MIN_ID} (on the pod or every container), with fsGroup "
    f"at least {MIN_ID}: lower ids may be accounts on the node (the sandbox uses 10001)."
)
FIX_SECRET_ENV = (
    "Fix: mount the Secret as a read-only file (a secret volume with items and mode 0400) instead of "
    "env valueFrom.secretKeyRef or envFrom.secretRef: environment variables show in the pod spec, in "
    "/proc/<pid>/environ and in crash dumps (the sandbox mounts its key at ~/.gemini/.env)."
)
FIX_DEFAULT_SERVICE_ACCOUNT = (
    "Fix: declare the namespace with sandbox_infra.namespaces.declare_namespace, which adds a "
    "ServiceAccountPatch setting the namespace's default ServiceAccount automountServiceAccountToken: false."
)


def _long_running_containers(resource: Resource, pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if resource.kind in _RUN_TO_COMPLETION:
        return []
    return [(label, c) for label, c in containers(pod) if not label.startswith("init container")]


def check_readiness(resource: Resource) -> list[str]:
    """Every long-running container has a readiness probe (init containers and Jobs need none)."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    missing = [
        label
        for label, container in _long_running_containers(resource, pod)
        if container.get("readinessProbe") is not UNKNOWN and not as_dict(container.get("readinessProbe"))
    ]
    if not missing:
        return []
    return [f"{resource.describe()}: {', '.join(missing)} has no readinessProbe. {FIX_READINESS}"]


def check_digests(resource: Resource) -> list[str]:
    """Every image, init containers' too, names a ``@sha256:`` digest (a tag can be moved; a digest cannot)."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    messages = []
    for label, container in containers(pod):
        image = container.get("image")
        if image is UNKNOWN or (isinstance(image, str) and has_digest(image)):
            continue
        messages.append(f"{resource.describe()}: {label} image {image!r} is not pinned by digest. {FIX_DIGEST}")
    return messages


def check_pull_policy(resource: Resource) -> list[str]:
    """Every container sets ``imagePullPolicy: Always``."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    wrong = [
        f"{label} ({policy or 'unset'})"
        for label, container in containers(pod)
        if (policy := container.get("imagePullPolicy")) is not UNKNOWN and policy != "Always"
    ]
    if not wrong:
        return []
    return [f"{resource.describe()}: imagePullPolicy is not Always for {', '.join(wrong)}. {FIX_PULL_POLICY}"]


def _id_problem(value: object, what: str) -> str | None:
    if value is UNKNOWN:
        return None
    if value is None:
        return f"sets no {what} (the image's user, often 1000 or root)"
    # Numbers reach the pack as floats (protobuf Struct): 10001.0 is 10001.
    if not isinstance(value, int | float) or isinstance(value, bool) or value < MIN_ID:
        shown = int(value) if isinstance(value, float) and value.is_integer() else value
        return f"runs with {what} {shown} (below {MIN_ID})"
    return None


def check_ids(resource: Resource) -> list[str]:
    """Every container runs as a UID and GID of at least :data:`MIN_ID`, and the pod's fsGroup (if any) too."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    subject = resource.describe()
    pod_context = get(pod, "securityContext")
    if pod_context is UNKNOWN:
        return []
    pod_context = as_dict(pod_context)
    messages = []
    fs_group = pod_context.get("fsGroup")
    if fs_group is not None and (problem := _id_problem(fs_group, "fsGroup")):
        messages.append(f"{subject}: the pod {problem}. {FIX_IDS}")
    for label, container in containers(pod):
        context = container.get("securityContext")
        if context is UNKNOWN:
            continue
        context = as_dict(context)
        problems = []
        for key in ("runAsUser", "runAsGroup"):
            value = context.get(key)
            if value is None:
                value = pod_context.get(key)
            if problem := _id_problem(value, key):
                problems.append(problem)
        if problems:
            messages.append(f"{subject}: {label} {'; '.join(problems)}. {FIX_IDS}")
    return messages


def check_secret_env(resource: Resource) -> list[str]:
    """No container takes a Secret through its environment (``secretKeyRef`` or ``envFrom.secretRef``)."""
    pod = resource.pod_spec()
    if pod is None:
        return []
    messages = []
    for label, container in containers(pod):
        found = [
            f"env {env.get('name')} from Secret {get(env, 'valueFrom', 'secretKeyRef', 'name')}"
            for env in as_list(container.get("env"))
            if isinstance(env, dict) and isinstance(get(env, "valueFrom", "secretKeyRef"), dict)
        ]
        found += [
            f"envFrom Secret {get(source, 'secretRef', 'name')}"
            for source in as_list(container.get("envFrom"))
            if isinstance(source, dict) and isinstance(source.get("secretRef"), dict)
        ]
        if found:
            messages.append(f"{resource.describe()}: {label} takes {', '.join(found)}. {FIX_SECRET_ENV}")
    return messages


def check_default_service_accounts(resources: list[Resource]) -> list[Violation]:
    """Every namespace the stack declares turns off its ``default`` ServiceAccount's token automount."""
    without_token = {
        r.namespace
        for r in resources
        if r.type in SERVICE_ACCOUNTS
        and r.k8s_name == DEFAULT_SERVICE_ACCOUNT
        and r.props.get("automountServiceAccountToken") in (False, UNKNOWN)
    }
    violations = []
    for namespace in (r for r in resources if r.type == NAMESPACE):
        name = namespace.k8s_name
        if name is None or name in without_token:
            continue
        violations.append(
            Violation(
                namespace.urn,
                f"{namespace.describe()}: its default ServiceAccount mounts an API token into every pod that names "
                f"no account (no ServiceAccount or ServiceAccountPatch 'default' in {name} sets "
                f"automountServiceAccountToken: false). {FIX_DEFAULT_SERVICE_ACCOUNT}",
            )
        )
    return violations
