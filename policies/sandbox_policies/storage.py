"""Rules for volumes: a freelancer's data is never deleted by a Pulumi change, and lives on known storage."""

from __future__ import annotations

from decimal import Decimal

from sandbox_infra.naming import SANDBOX_VOLUMES, VOLUME_LABEL
from sandbox_policies.model import UNKNOWN, VOLUME_NAME, Resource, get
from sandbox_policies.quantity import QuantityError, parse_quantity


def is_sandbox_volume(resource: Resource) -> bool:
    """A sandbox's workspace or home claim: labelled ``platform.com/volume``, or named ``workspace-/home-<uuid>``."""
    if resource.labels.get(VOLUME_LABEL) in SANDBOX_VOLUMES:
        return True
    return bool(VOLUME_NAME.match(resource.k8s_name or ""))


def check_protected(resource: Resource) -> list[str]:
    """A sandbox volume carries Pulumi's ``protect`` option, so no roster change or destroy can delete it."""
    if not is_sandbox_volume(resource) or resource.protect:
        return []
    return [
        f"{resource.describe()}: this sandbox volume is not protected, so removing its roster entry or a "
        "`pulumi destroy` would delete the freelancer's data. Fix: declare it with "
        "ResourceOptions(protect=True, retain_on_delete=True) (FreelancerSandbox does)."
    ]


def check_storage_class(resource: Resource, classes: list[str]) -> list[str]:
    """A claim names one of the configured StorageClasses (never the cluster's default by omission)."""
    storage_class = resource.spec.get("storageClassName")
    if storage_class is UNKNOWN or storage_class in classes:
        return []
    found = f"StorageClass '{storage_class}'" if isinstance(storage_class, str) else "no storageClassName"
    return [
        f"{resource.describe()}: uses {found}; allowed: {', '.join(classes)}. Fix: set spec.storageClassName "
        "to one of them (the stack settings workspaceStorageClass/homeStorageClass), or add the class to the "
        "policy config's storageClasses."
    ]


def check_size(resource: Resource, maximum: Decimal, maximum_text: str) -> list[str]:
    """A claim requests storage, and no more than the configured maximum."""
    size = get(resource.spec, "resources", "requests", "storage")
    if size is UNKNOWN:
        return []
    fix = f"Fix: request at most {maximum_text} (the roster's storage sizes and the stack's maxStorage)."
    if size is None:
        return [f"{resource.describe()}: requests no storage (spec.resources.requests.storage). {fix}"]
    try:
        requested = parse_quantity(size)
    except QuantityError as exc:
        return [f"{resource.describe()}: spec.resources.requests.storage: {exc}. {fix}"]
    if requested > maximum:
        return [f"{resource.describe()}: requests {size}, more than the maximum {maximum_text}. {fix}"]
    return []
