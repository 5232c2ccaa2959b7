"""Every namespace the platform creates, declared one way: with its ``default`` ServiceAccount mounting no token.

Kubernetes' ServiceAccount controller creates a ``default`` ServiceAccount in each new namespace, and a pod
that names no account runs as it with an API token mounted, unless the account says
``automountServiceAccountToken: false``. The platform's own pods already opt out one by one; this closes
the default for anything else that lands in the namespace (CIS Kubernetes Benchmark 5.1.5).

The object belongs to that controller, not to Pulumi, so it is declared as a ``ServiceAccountPatch``: a
server-side apply of that one field under Pulumi's own field manager. It works whether the controller or
the patch gets there first (an apply creates the object if it is missing), a second ``up`` finds nothing to
change, and removing the patch gives the field back instead of deleting the account. A plain
``ServiceAccount`` resource would instead claim the whole object: an "upsert" that newer providers refuse
(``AlreadyExists``), and whose deletion would delete the account.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from sandbox_infra import naming

DEFAULT_SERVICE_ACCOUNT = "default"


def declare_namespace(
    name: str,
    namespace_name: str,
    labels: Mapping[str, str],
    opts: pulumi.ResourceOptions,
    *,
    annotations: Mapping[str, str] | None = None,
) -> k8s.core.v1.Namespace:
    """The namespace ``namespace_name`` (resource ``<name>-namespace``) and the patch ``<name>-default-sa``
    that turns off its ``default`` ServiceAccount's token automount. ``opts`` are the namespace's (parent,
    protect...); the patch shares only its parent (and so its provider). The namespace gets the platform's
    field manager, unforced (a field someone else manages on a namespace stops the update, for a person to
    decide); the patch is forced (the field is the platform's; :func:`naming.object_annotations`)."""
    metadata: k8s.meta.v1.ObjectMetaArgsDict = {
        "name": namespace_name,
        "labels": dict(labels),
        "annotations": {**(annotations or {}), **naming.object_annotations(force=False)},
    }
    namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata=metadata, opts=opts)
    # The namespace's name as given, not the Output: a preview of a new namespace then still shows (and the
    # policy pack can check) which namespace the patch is for; depends_on orders the two.
    patch_metadata: k8s.meta.v1.ObjectMetaPatchArgsDict = {
        "name": DEFAULT_SERVICE_ACCOUNT,
        "namespace": namespace_name,
        "annotations": naming.object_annotations(force=True),
    }
    k8s.core.v1.ServiceAccountPatch(
        f"{name}-default-sa",
        metadata=patch_metadata,
        automount_service_account_token=False,
        opts=pulumi.ResourceOptions(parent=opts.parent, provider=opts.provider, depends_on=[namespace]),
    )
    return namespace
