"""sandbox_policies.once: each resource converted once per request, with the same verdicts as before."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pulumi_policy.policy as policy_sdk
import pytest
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped,unused-ignore]
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from sandbox_policies import once, secrets
from sandbox_policies.pack import PACK_NAME, all_policies

from tests.policy.harness import Declared
from tests.policy.test_policies import API_KEY_SECRET, QUOTA_COVERS, plain_text_api_key, quota_too_small


def _servicer() -> Any:
    return policy_sdk._PolicyAnalyzerServicer(PACK_NAME, "0.1.0", all_policies(), EnforcementLevel.MANDATORY)


def _resource(r: Declared) -> proto.AnalyzerResource:
    return proto.AnalyzerResource(
        type=r.type, urn=r.urn, name=r.name, properties=json_format.ParseDict(r.wire, struct_pb2.Struct())
    )


def _request(r: Declared) -> proto.AnalyzeRequest:
    return proto.AnalyzeRequest(
        type=r.type, urn=r.urn, name=r.name, properties=json_format.ParseDict(r.wire, struct_pb2.Struct())
    )


def _verdicts(response: Any) -> list[tuple[str, str, str]]:
    return sorted((d.policyName, d.urn, d.message) for d in response.diagnostics)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How many times protobuf's MessageToDict ran, by message."""
    counts: Counter[int] = Counter()
    real = json_format.MessageToDict

    def counting(message: Any, **options: Any) -> Any:
        counts[id(message)] += 1
        return real(message, **options)

    monkeypatch.setattr(json_format, "MessageToDict", counting)  # what once's own MessageToDict calls
    return counts


def test_it_is_installed_and_keeps_the_secret_marking() -> None:
    assert once.installed() and secrets.installed()


def test_analyze_converts_a_resource_once_for_all_policies(stack: list[Declared], conversions: Counter[int]) -> None:
    sts = next(r for r in stack if r.type == "kubernetes:apps/v1:StatefulSet")
    _servicer().Analyze(_request(sts), None)
    assert list(conversions.values()) == [1]  # 16 resource policies, one conversion


def test_analyze_stack_converts_each_resource_once(stack: list[Declared], conversions: Counter[int]) -> None:
    request = proto.AnalyzeStackRequest(resources=[_resource(r) for r in stack])
    _servicer().AnalyzeStack(request, None)
    assert len(conversions) == len(stack) and set(conversions.values()) == {1}  # 7 stack policies


@pytest.mark.parametrize(
    ("variant", "broken"),
    [(list, None), (plain_text_api_key, API_KEY_SECRET), (quota_too_small, QUOTA_COVERS)],
    ids=["as declared", "plain-text key", "quota too small"],
)
def test_every_verdict_is_the_same_as_without_it(
    stack: list[Declared], variant: Callable[[list[Declared]], list[Declared]], broken: str | None
) -> None:
    """Each resource and the whole stack, through the memoized handlers and through the SDK's own (which
    convert inside the policy loop), must give the same violations."""
    resources = variant(stack)
    servicer = _servicer()
    sdk_analyze = type(servicer).Analyze.__wrapped__
    sdk_analyze_stack = type(servicer).AnalyzeStack.__wrapped__
    memoized: list[tuple[str, str, str]] = []
    for r in resources:
        verdicts = _verdicts(servicer.Analyze(_request(r), None))
        assert verdicts == _verdicts(sdk_analyze(servicer, _request(r), None))
        memoized += verdicts
    request = proto.AnalyzeStackRequest(resources=[_resource(r) for r in resources])
    verdicts = _verdicts(servicer.AnalyzeStack(request, None))
    assert verdicts == _verdicts(sdk_analyze_stack(servicer, request, None))
    memoized += verdicts
    assert broken is None or broken in {name for name, _, _ in memoized}


def test_nothing_is_remembered_outside_a_request() -> None:
    first = once.remembered("k", "key", lambda: [1])
    assert once.remembered("k", "key", lambda: [1]) is not first
    with once.request():
        inside = once.remembered("k", "key", lambda: [2])
        assert once.remembered("k", "key", lambda: [3]) is inside


def test_a_changed_sdk_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(once, "_EXPECTED_CALLS", ("json_format.MessageToDict(request.properties, True)",))
    with pytest.raises(RuntimeError, match=r"pulumi-policy==1\.21\.0"):
        once._checked()
