"""Which input values are Pulumi secrets: the one fact pulumi-policy 1.21 does not hand a validation.

The engine sends a resource's inputs to the pack with every Pulumi secret still wrapped in its secret
signature (``{"4dabf181…": "1b470612…", "value": …}``). pulumi-policy 1.21 unwraps those wrappers before
a resource validation sees the properties (it keeps them only for remediations), so a policy cannot
tell ``Output.secret(key)`` from a plain string. :func:`install` wraps the pack SDK's deserializer so
that every string under a secret wrapper arrives as a :class:`SecretStr`: a ``str`` in every respect, so
other policies see the same values as before, but one whose secretness a policy can ask about.

This changes nothing but the type of secret strings. Secret numbers and booleans stay unmarked (no API
key is one). ``__main__.py`` installs it before serving the pack; the Secret policy refuses to run
without it rather than call every key plain text.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pulumi_policy.policy as _policy_module
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties

Deserializer = Callable[..., dict[str, Any]]


class SecretStr(str):
    """A string that reached the pack as a Pulumi secret."""

    __slots__ = ()


def is_secret(value: object) -> bool:
    return isinstance(value, SecretStr)


def _secret_contents(value: Any) -> Any:
    """Everything inside a secret is secret: mark each string of it."""
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, list):
        return [_secret_contents(v) for v in value]
    if isinstance(value, dict):
        if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG:
            return _secret_contents(value.get("value"))
        return {k: _secret_contents(v) for k, v in value.items()}
    return value


def mark_secrets(value: Any) -> Any:
    """Replace each secret wrapper of wire-format properties by its value, with its strings marked."""
    if isinstance(value, list):
        return [mark_secrets(v) for v in value]
    if isinstance(value, dict):
        if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG and "value" in value:
            return _secret_contents(value["value"])
        return {k: mark_secrets(v) for k, v in value.items()}
    return value


def deserialize_marking_secrets(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
    """pulumi-policy's ``deserialize_properties``, but secret strings come out as :class:`SecretStr`.

    Remediations (``proxy_secrets``) keep the SDK's own handling: they must write secrets back as secrets.
    """
    if proxy_secrets:
        return deserialize_properties(props, True)
    return deserialize_properties(mark_secrets(props))


def install() -> None:
    """Make the pack SDK deserialize with :func:`deserialize_marking_secrets` (idempotent)."""
    current: Deserializer = inspect.unwrap(_policy_module.deserialize_properties)  # type: ignore[attr-defined]
    if current is not deserialize_marking_secrets:
        if current is not deserialize_properties:
            raise RuntimeError(
                "pulumi_policy.policy.deserialize_properties is not the one this pack was written for; "
                "check policies/requirements.txt (pulumi-policy==1.21.0) and sandbox_policies/secrets.py"
            )
        _policy_module.deserialize_properties = deserialize_marking_secrets  # type: ignore[attr-defined]


def installed() -> bool:
    """True once :func:`install` ran (also under :mod:`sandbox_policies.once`, which wraps this deserializer)."""
    return inspect.unwrap(_policy_module.deserialize_properties) is deserialize_marking_secrets  # type: ignore[attr-defined]
