"""Rules for a client's namespace object itself: Pod Security admission enforces ``restricted``, pinned."""

from __future__ import annotations

import re

from sandbox_policies.model import UNKNOWN, Resource, is_client_namespace

ENFORCE = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
_PINNED = re.compile(r"^v1\.[0-9]+$")


def check_pod_security(resource: Resource) -> list[str]:
    """A client namespace labels ``enforce: restricted`` and ``enforce-version: v1.<minor>`` (not ``latest``)."""
    if not is_client_namespace(resource):
        return []
    labels = resource.labels
    problems = []
    level, version = labels.get(ENFORCE), labels.get(ENFORCE_VERSION)
    if level is not UNKNOWN and level != "restricted":
        problems.append(f"{ENFORCE} is {level!r}, not 'restricted'" if level else f"has no {ENFORCE} label")
    if version is not UNKNOWN and not (isinstance(version, str) and _PINNED.match(version)):
        pinned = f"{ENFORCE_VERSION} is {version!r}, not a pinned v1.<minor>"
        problems.append(pinned if version else f"has no {ENFORCE_VERSION} label")
    if not problems:
        return []
    return [
        f"{resource.describe()}: {'; '.join(problems)}. Fix: label the namespace {ENFORCE}: restricted and "
        f"{ENFORCE_VERSION}: <the stack's podSecurityVersion, e.g. v1.34> (ClientTenant does, for audit and warn too)."
    ]
