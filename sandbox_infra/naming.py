"""Every Kubernetes name and label the platform generates, and the rules they must satisfy.

Names derive only from immutable roster ids (never emails or list positions), so renaming a client or
changing a freelancer's email never replaces a resource. The checks here run during roster validation,
so a name the API server would reject is reported against the roster line that produced it.
"""

from __future__ import annotations

import re
from uuid import UUID

PART_OF = "sandbox-infra"
MANAGED_BY = "pulumi"

# Label keys and values the policy pack reads too (policies/sandbox_policies/model.py imports them).
APP_NAME_LABEL = "app.kubernetes.io/name"
CLIENT_LABEL = "platform.com/client"
FREELANCER_LABEL = "platform.com/freelancer"
TIER_LABEL = "platform.com/tier"
VOLUME_LABEL = "platform.com/volume"
SANDBOX_APP = "sandbox"
CLIENT_NAMESPACE_PREFIX = "client-"
SANDBOX_VOLUMES = ("workspace", "home")

# The Sandbox custom resource's identity (its CRD is declared by platform.py).
CRD_GROUP = "platform.com"
CRD_VERSION = "v1"
CRD_KIND = "Sandbox"
CRD_PLURAL = "sandboxes"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A StatefulSet's pods carry the label controller-revision-hash=<name>-<10-char hash>, which must fit 63.
_STATEFULSET_MAX = 63 - 11


def namespace(client_id: UUID) -> str:
    return f"{CLIENT_NAMESPACE_PREFIX}{client_id}"


def sandbox(freelancer_id: UUID) -> str:
    """Name of the StatefulSet, its headless Service and the Sandbox object (one per client namespace)."""
    return f"sandbox-{freelancer_id}"


def workspace_pvc(freelancer_id: UUID) -> str:
    return f"workspace-{freelancer_id}"


def home_pvc(freelancer_id: UUID) -> str:
    return f"home-{freelancer_id}"


API_KEY_SECRET = "gemini-api-key"
PULL_SECRET = "registry-pull"
"""The image pull Secret of a client namespace (the platform's Harbor, a robot account's token)."""
API_KEY_SECRET_KEY = ".env"
"""The Secret holds the key as Gemini CLI's ``.env`` file (``GEMINI_API_KEY=...``), mounted at ``~/.gemini/.env``."""
API_KEY_ENV_VAR = "GEMINI_API_KEY"
SANDBOX_SERVICE_ACCOUNT = "sandbox"


def _dns1123(kind: str, name: str, limit: int = 63) -> list[str]:
    problems = []
    if len(name) > limit:
        problems.append(f"generated {kind} name '{name}' is {len(name)} characters (limit {limit})")
    if not _DNS1123_LABEL.match(name):
        problems.append(f"generated {kind} name '{name}' is not a DNS-1123 label (lowercase letters, digits, '-')")
    return problems


def check_client_names(client_id: UUID) -> list[str]:
    """Problems with the names generated for a client (empty when all are valid)."""
    return _dns1123("namespace", namespace(client_id))


def check_sandbox_names(freelancer_id: UUID) -> list[str]:
    """Problems with the names generated for a freelancer's sandboxes (empty when all are valid)."""
    statefulset = sandbox(freelancer_id)
    problems = _dns1123("StatefulSet", statefulset, _STATEFULSET_MAX)
    if not _DNS1035_LABEL.match(statefulset):
        problems.append(f"generated Service name '{statefulset}' is not a DNS-1035 label")
    problems += _dns1123("PersistentVolumeClaim", workspace_pvc(freelancer_id))
    problems += _dns1123("PersistentVolumeClaim", home_pvc(freelancer_id))
    return problems


def labels(
    *,
    name: str,
    instance: str,
    component: str,
    client: UUID | None = None,
    freelancer: UUID | None = None,
    tier: str | None = None,
) -> dict[str, str]:
    """The standard label set carried by every object the platform declares."""
    result = {
        APP_NAME_LABEL: name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if client is not None:
        result[CLIENT_LABEL] = str(client)
    if freelancer is not None:
        result[FREELANCER_LABEL] = str(freelancer)
    if tier is not None:
        result[TIER_LABEL] = tier
    return result


def sandbox_selector(freelancer_id: UUID) -> dict[str, str]:
    """Selects exactly one freelancer's sandbox pod inside a client namespace (immutable on a StatefulSet)."""
    return {APP_NAME_LABEL: SANDBOX_APP, FREELANCER_LABEL: str(freelancer_id)}


SANDBOX_POD_SELECTOR = {APP_NAME_LABEL: SANDBOX_APP}
"""Selects every sandbox pod of a namespace (NetworkPolicies)."""

FIELD_MANAGER = "sandbox-infra"
"""The server-side apply field manager of every object the platform declares (see :func:`object_annotations`)."""
FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"
FORCE_ANNOTATION = "pulumi.com/patchForce"


def object_annotations(*, force: bool) -> dict[str, str]:
    """The pulumi-kubernetes annotations every object carries.

    One field manager name for every apply, instead of the provider's default of a random name per
    resource kept only in Pulumi's state: an update interrupted after a create reached the API server
    leaves the object owned by a name the state never recorded, and the next change of any of its fields
    then fails with a server-side apply conflict (found by the crash test; docs/reliability.md).

    ``force``: the platform owns the object outright, so an apply takes back fields a person changed by
    hand (``kubectl scale``, ``kubectl edit``) instead of failing on the conflict: that is how ``up
    --refresh`` restores drift. Namespaces and volumes are not forced: a field someone else manages there
    stops the update and names the object, for a person to decide.
    """
    result = {FIELD_MANAGER_ANNOTATION: FIELD_MANAGER}
    if force:
        result[FORCE_ANNOTATION] = "true"
    return result
