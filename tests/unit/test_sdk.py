"""sandbox_infra.sdk: the SDK's debug messages stay out of the engine unless asked for."""

from __future__ import annotations

import logging

import pulumi
import pulumi_kubernetes as k8s
import pytest

from sandbox_infra.sdk import SDK_DEBUG_ENV, quiet_debug_logs
from tests.unit.mocks import run_program

SDK_DEBUG = pulumi.log.debug
"""The SDK's own function, taken at collection, before any test runs ``main`` (which replaces it)."""


def register_one() -> None:
    k8s.core.v1.ConfigMap("probe", metadata={"name": "probe"}, data={"a": "b"})


def sdk_debug_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What reached the (mock) engine's Log RPC at debug severity while a resource was registered."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        run_program(register_one)
    return [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "resource" in r.getMessage()]


@pytest.fixture(autouse=True)
def restore_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi.log, "debug", SDK_DEBUG)  # and back to what it was after the test


def test_debug_messages_are_dropped_by_default(caplog: pytest.LogCaptureFixture) -> None:
    assert any("registering resource" in m for m in sdk_debug_messages(caplog)), "the SDK's own behaviour changed"
    assert quiet_debug_logs({}) is True
    assert sdk_debug_messages(caplog) == []


def test_other_severities_still_reach_the_engine(caplog: pytest.LogCaptureFixture) -> None:
    quiet_debug_logs({})
    with caplog.at_level(logging.DEBUG):
        pulumi.log.warn("still here")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == ["still here"]


@pytest.mark.parametrize("value", ["1", "true"])
def test_the_environment_variable_keeps_them(value: str, caplog: pytest.LogCaptureFixture) -> None:
    assert quiet_debug_logs({SDK_DEBUG_ENV: value}) is False
    assert any("registering resource" in m for m in sdk_debug_messages(caplog))
