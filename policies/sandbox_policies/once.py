"""Each resource's properties converted once per request, not once per policy.

pulumi-policy 1.21 prepares a resource's properties inside its loop over the policies: for every one of
the pack's 16 resource policies, ``Analyze`` turns the same protobuf ``Struct`` into a dict
(``json_format.MessageToDict``, pure Python), deserializes it, wraps it in unknown-checking proxies, and
does the same for the resource's provider; ``AnalyzeStack`` does it for every resource of the stack, for
each of the 7 stack policies. Profiled on a preview of one client stack (159 resources), that was
3 of the pack's 4.4 CPU-seconds, and the pack was the largest CPU user of the preview.

:func:`install` makes each of those steps return the object it returned before *for the same input object
within one request*: the conversion of a message, the deserialization of that dict (secret strings marked,
:mod:`sandbox_policies.secrets`), the proxy of that result, and the plain copy the policies read
(:func:`sandbox_policies.model.to_plain`). Every policy then sees the same values as before; nothing
outlives the request. The policies only read what they are given (tests/policy/test_once.py runs the
whole pack with and without this and compares every violation).

It is installed only over the exact pulumi-policy code it was written against: :func:`install` refuses
a version whose ``Analyze`` or ``AnalyzeStack`` no longer prepares properties with these calls.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

import pulumi_policy.policy as _policy_module
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]

_T = TypeVar("_T")
_scope = threading.local()
# What Analyze and AnalyzeStack must contain for the memo to be right (checked by install()).
_EXPECTED_CALLS = (
    "deserialize_properties(json_format.MessageToDict(",
    "unknown_checking_proxy(deserialized)",
)
_SERVICER = _policy_module._PolicyAnalyzerServicer  # the class the engine's requests reach


def remembered(kind: str, key: object, compute: Callable[[], _T]) -> _T:
    """``compute()``, or inside a request, what it gave for the same ``key`` object (by identity) before."""
    memo: dict[tuple[str, int], tuple[object, Any]] | None = getattr(_scope, "memo", None)
    if memo is None:
        return compute()
    entry = memo.get((kind, id(key)))
    if entry is not None and entry[0] is key:
        result: _T = entry[1]
        return result
    value = compute()
    memo[(kind, id(key))] = (key, value)  # the key is held, so its id is not reused within the request
    return value


@contextmanager
def request() -> Iterator[None]:
    """One request's memo (requests run in the server's threads, each with its own)."""
    outer = getattr(_scope, "memo", None)
    _scope.memo = {}
    try:
        yield
    finally:
        _scope.memo = outer


class _JsonFormat(ModuleType):
    """``google.protobuf.json_format`` as pulumi-policy sees it: ``MessageToDict`` of a message without
    options is converted once per request."""

    def __init__(self) -> None:
        super().__init__(json_format.__name__)

    def __getattr__(self, name: str) -> Any:
        return getattr(json_format, name)

    @staticmethod
    def MessageToDict(message: Any, **options: Any) -> Any:  # noqa: N802 - the protobuf function's name
        if options:
            return json_format.MessageToDict(message, **options)
        return remembered("dict", message, lambda: json_format.MessageToDict(message))


def _per_request(method: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        with request():
            return method(*args, **kwargs)

    wrapper.__wrapped_by_once__ = True  # type: ignore[attr-defined]
    return wrapper


def _checked() -> None:
    for name in ("Analyze", "AnalyzeStack"):
        source = inspect.getsource(getattr(_SERVICER, name))
        missing = [call for call in _EXPECTED_CALLS if call not in source]
        if missing:
            raise RuntimeError(
                f"pulumi_policy's {name} no longer calls {', '.join(missing)}: sandbox_policies/once.py was "
                "written for pulumi-policy==1.21.0 (policies/requirements.txt); review it before installing"
            )


def install() -> None:
    """Convert each input once per request (idempotent). Call after :func:`sandbox_policies.secrets.install`."""
    if installed():
        return
    _checked()
    deserialize = _policy_module.deserialize_properties  # type: ignore[attr-defined]
    proxy = _policy_module.unknown_checking_proxy  # type: ignore[attr-defined]

    @functools.wraps(deserialize)
    def deserialize_once(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
        kind = "secrets-proxied" if proxy_secrets else "deserialized"
        return remembered(kind, props, lambda: deserialize(props, proxy_secrets))

    def proxy_once(props: dict[str, Any]) -> dict[str, Any]:
        return remembered("proxy", props, lambda: proxy(props))

    _policy_module.json_format = _JsonFormat()  # type: ignore[attr-defined]
    _policy_module.deserialize_properties = deserialize_once  # type: ignore[attr-defined]
    _policy_module.unknown_checking_proxy = proxy_once  # type: ignore[attr-defined]
    for name in ("Analyze", "AnalyzeStack"):
        setattr(_SERVICER, name, _per_request(getattr(_SERVICER, name)))


def installed() -> bool:
    return getattr(_SERVICER.Analyze, "__wrapped_by_once__", False)
