"""Rules for credentials: an API key reaches Kubernetes only as a Pulumi secret, never as plain text.

What the engine analyses are the inputs after the provider's Check. pulumi-kubernetes marks the ``data`` and
``stringData`` of every v1 Secret secret there, so for its Secrets this rule is a backstop: it fires when a
value reaches the pack unmarked (another provider or resource type, a provider that stops marking). The
leak a program can still make, a key as a literal container ``env`` value, is the pod policy
``kubernetes-core-v1-pod-api-keys-from-secrets``.
"""

from __future__ import annotations

from sandbox_policies import secrets
from sandbox_policies.model import UNKNOWN, Resource, as_dict


def holds_api_key(resource: Resource, names: list[str], patterns: list[str]) -> list[str]:
    """The keys of a Secret that hold API keys: all of them if it is a named API-key Secret, else those whose
    name matches a pattern."""
    keys = [str(k) for field in ("data", "stringData") for k in as_dict(resource.props.get(field))]
    if resource.k8s_name in names:
        return keys
    return [k for k in keys if any(p in k.lower() for p in patterns)]


def check_api_key_secret(resource: Resource, names: list[str], patterns: list[str]) -> list[str]:
    """Every API-key value of a Secret's ``data``/``stringData`` reached the engine marked as a Pulumi secret."""
    api_keys = holds_api_key(resource, names, patterns)
    plain = []
    for field in ("data", "stringData"):
        values = resource.props.get(field)
        for key, value in as_dict(values).items():
            if key in api_keys and value is not UNKNOWN and not secrets.is_secret(value):
                plain.append(f"{field}.{key}" if key.isidentifier() else f"{field}[{key!r}]")
    if not plain:
        return []
    return [
        f"{resource.describe()}: {', '.join(plain)} is plain text in the program's inputs, so it would be stored "
        "unencrypted in the Pulumi state and could show in previews. Fix: read the key with "
        "`pulumi config set --secret` + Config.require_secret/get_secret and pass it as Output.secret(...) "
        "(ClientTenant does)."
    ]
