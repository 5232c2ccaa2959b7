"""sandbox_infra.sdk: the SDK's debug messages stay out of the engine unless asked for, and its wait at exit is
linear (only over the SDK source it was reviewed against)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from contextvars import Context
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
import pulumi.runtime.stack
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime.settings import SETTINGS

from sandbox_infra import sdk
from sandbox_infra.sdk import (
    SDK_DEBUG_ENV,
    SDK_ORIGINAL_WAIT_ENV,
    WAIT_FOR_RPCS_SDK_VERSION,
    WAIT_FOR_RPCS_SHA256,
    install_linear_wait,
    linear_wait_for_rpcs,
    quiet_debug_logs,
    wait_for_rpcs_fingerprint,
)
from tests.unit import mocks
from tests.unit.mocks import run_program

T = TypeVar("T")

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


# --- The wait at exit -----------------------------------------------------------------------------------------

SDK_WAIT_FOR_RPCS = pulumi.runtime.stack.wait_for_rpcs
"""The SDK's own function, taken at collection, before any test runs ``main`` (which replaces it)."""

Wait = Callable[[], Coroutine[Any, Any, None]]


@pytest.fixture(autouse=True)
def restore_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from the SDK's function in every module that holds it; monkeypatch puts back the rest."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict) and namespace.get("wait_for_rpcs") in (SDK_WAIT_FOR_RPCS, linear_wait_for_rpcs):
            monkeypatch.setitem(namespace, "wait_for_rpcs", SDK_WAIT_FOR_RPCS)


@pytest.fixture(autouse=True)
def clean_settings() -> None:
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()


def test_the_sdk_wait_is_the_one_the_shim_was_reviewed_against() -> None:
    assert SDK_WAIT_FOR_RPCS is not linear_wait_for_rpcs
    assert wait_for_rpcs_fingerprint(SDK_WAIT_FOR_RPCS) == (WAIT_FOR_RPCS_SDK_VERSION, WAIT_FOR_RPCS_SHA256), (
        "pulumi.runtime.stack.wait_for_rpcs (or the pulumi version) changed: install_linear_wait now leaves it in "
        "place. Re-review sandbox_infra/sdk.py's linear_wait_for_rpcs against the new source (and Output._track), "
        "then record the new version and hash."
    )


def test_install_replaces_every_reference() -> None:
    import pulumi.provider.experimental.server
    import pulumi.provider.server

    holders = [pulumi.runtime.stack, pulumi.provider.server, pulumi.provider.experimental.server, mocks]
    assert all(vars(m)["wait_for_rpcs"] is SDK_WAIT_FOR_RPCS for m in holders)
    assert install_linear_wait({}) is True
    assert [vars(m)["wait_for_rpcs"] for m in holders] == [linear_wait_for_rpcs] * len(holders)
    assert install_linear_wait({}) is True, "installing twice is fine"
    assert pulumi.runtime.stack.wait_for_rpcs is linear_wait_for_rpcs


@pytest.mark.parametrize("constant", ["WAIT_FOR_RPCS_SHA256", "WAIT_FOR_RPCS_SDK_VERSION"])
def test_install_leaves_an_unknown_sdk_alone(
    constant: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sdk, constant, "something else")
    with caplog.at_level(logging.DEBUG):
        assert install_linear_wait({}) is False
    assert pulumi.runtime.stack.wait_for_rpcs is SDK_WAIT_FOR_RPCS
    assert vars(mocks)["wait_for_rpcs"] is SDK_WAIT_FOR_RPCS
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("value", ["1", "true"])
def test_the_environment_variable_keeps_the_sdk_wait(value: str) -> None:
    assert install_linear_wait({SDK_ORIGINAL_WAIT_ENV: value}) is False
    assert pulumi.runtime.stack.wait_for_rpcs is SDK_WAIT_FOR_RPCS


async def ticks(n: int) -> None:
    """Let the event loop turn ``n`` times: the scenarios below are deterministic in these."""
    for _ in range(n):
        await asyncio.sleep(0)


def output_of(coro: Coroutine[Any, Any, T]) -> pulumi.Output[T]:
    """A real Output (tracked in ``SETTINGS.outputs`` by the SDK itself) of a coroutine's result."""
    known: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    known.set_result(True)
    return pulumi.Output(set(), asyncio.ensure_future(coro), known)


@dataclass
class Outcome:
    """What a wait did in a scenario: what it raised (type, args, cause's type), what had run by then and,
    when it returned, what was left."""

    raised: tuple[type[BaseException], tuple[Any, ...], type[BaseException] | None] | None = None
    events: list[str] = field(default_factory=list)
    left_tracked: int = 0
    left_running: int = 0
    started: list[asyncio.Future[Any]] = field(default_factory=list, compare=False)


Scenario = Callable[[Outcome], None]


def run(wait: Wait, scenario: Scenario) -> Outcome:
    """Run ``scenario`` (which starts work and returns) then ``wait`` in a fresh event loop, as the runtime does."""
    outcome = Outcome()

    async def main() -> None:
        scenario(outcome)
        await asyncio.sleep(0)  # started RPCs register themselves in their first step
        try:
            await wait()
        except BaseException as exc:  # CancelledError included: a cancelled Output is raised as such
            outcome.raised = (type(exc), exc.args, type(exc.__cause__) if exc.__cause__ else None)
        else:  # what an exception leaves running depends on the turn of the loop it is raised in
            outcome.left_tracked = len(SETTINGS.outputs)
            outcome.left_running = sum(not t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # the failures no wait got to ("never retrieved")
    try:
        loop.run_until_complete(main())
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
        SETTINGS.outputs.clear()
        SETTINGS.rpc_manager.clear()
    return outcome


def both(scenario: Scenario) -> Outcome:
    """The linear wait's outcome, after checking that it is the SDK wait's."""
    expected, actual = run(SDK_WAIT_FOR_RPCS, scenario), run(linear_wait_for_rpcs, scenario)
    assert actual == expected
    return actual


def spawning(outcome: Outcome) -> None:
    """Outputs that create Outputs (two levels deep) while the wait runs, and many independent ones."""

    async def step(name: str, after: int, then: Scenario | None = None) -> str:
        await ticks(after)
        if then is not None:
            then(outcome)
        outcome.events.append(name)
        return name

    def grandchild(_: Outcome) -> None:
        output_of(step("grandchild", 7))

    def child(_: Outcome) -> None:
        output_of(step("child", 5, grandchild))

    output_of(step("parent", 3, child))
    for i in range(50):
        output_of(step(f"other-{i}", i % 9))


def test_waits_for_outputs_created_while_waiting() -> None:
    outcome = both(spawning)
    assert outcome.raised is None
    assert sorted(outcome.events) == sorted(["parent", "child", "grandchild", *(f"other-{i}" for i in range(50))])
    assert (outcome.left_tracked, outcome.left_running) == (0, 0), "returns with nothing pending"


async def fail(exc: BaseException, after: int) -> str:
    await ticks(after)
    raise exc


def failing_after_a_spawn(outcome: Outcome) -> None:
    """The first failure is an Output created while waiting; Outputs the wait started with fail later."""

    async def spawner() -> str:
        await ticks(5)
        output_of(fail(KeyError("spawned"), 10))
        return "spawner"

    output_of(fail(ValueError("later"), 40))
    output_of(spawner())
    output_of(fail(RuntimeError("latest"), 60))
    for i in range(20):
        output_of(ticks(i))


def test_raises_the_first_failure_as_the_sdk_does() -> None:
    assert both(failing_after_a_spawn).raised == (KeyError, ("spawned",), None)


def cancelled_first(outcome: Outcome) -> None:
    async def cancelled() -> None:
        await ticks(10)
        raise asyncio.CancelledError

    output_of(cancelled())
    output_of(fail(ValueError("later"), 20))


def test_a_cancelled_output_is_raised_as_the_sdk_does() -> None:
    assert both(cancelled_first).raised == (asyncio.CancelledError, (), None)


def recovered_and_applied(outcome: Outcome) -> None:
    """A recovered fault is not raised; a fault carried by ``apply`` is, once, at the end of the chain."""
    recovered = output_of(fail(ValueError("recovered"), 3)).recover(lambda exc: f"fallback for {exc}")
    recovered.apply(outcome.events.append)

    def boom(value: str) -> str:
        raise ValueError(f"apply failed on {value}")

    output_of(ticks(5)).apply(lambda _: "x").apply(boom).apply(outcome.events.append)


def test_untracked_and_derived_outputs_as_the_sdk_does() -> None:
    outcome = both(recovered_and_applied)
    assert outcome.raised == (ValueError, ("apply failed on x",), None)
    assert outcome.events == ["fallback for recovered"]


def failing_rpc(outcome: Outcome) -> None:
    async def rpc() -> None:
        await ticks(3)
        raise ConnectionError("engine went away")

    outcome.started.append(asyncio.ensure_future(SETTINGS.rpc_manager.do_rpc("probe", rpc)()))


def test_a_failed_rpc_is_raised_as_the_sdk_does() -> None:
    assert both(failing_rpc).raised == (ConnectionError, ("engine went away",), ConnectionError)


def test_nothing_to_wait_for() -> None:
    assert both(lambda outcome: None) == Outcome()


class CountingFuture(asyncio.Future[None]):
    """Counts the done-callbacks added to it: the wait's cost per pending Output."""

    added = 0

    def add_done_callback(self, fn: Callable[[CountingFuture], object], /, *, context: Context | None = None) -> None:
        CountingFuture.added += 1
        super().add_done_callback(fn, context=context)


def callbacks_added(wait: Wait, n: int) -> int:
    """Callbacks added to ``n`` tracked futures that complete one per turn of the event loop."""

    def scenario(outcome: Outcome) -> None:
        futures = [CountingFuture() for _ in range(n)]
        SETTINGS.outputs.update(futures)  # Futures: all the waits need of the SDK's tasks

        async def complete() -> None:
            for future in futures:
                await asyncio.sleep(0)
                future.set_result(None)

        outcome.started.append(asyncio.ensure_future(complete()))

    CountingFuture.added = 0
    assert run(wait, scenario) == Outcome()
    return CountingFuture.added


def test_the_wait_is_linear_in_the_pending_outputs() -> None:
    n = 2_000
    assert callbacks_added(linear_wait_for_rpcs, n) < 10 * n
    assert callbacks_added(SDK_WAIT_FOR_RPCS, n) > 100 * n, "the SDK's wait is quadratic (about n * n / 4 here)"


def test_mocked_programs_run_with_the_linear_wait() -> None:
    assert install_linear_wait({}) is True
    assert vars(mocks)["wait_for_rpcs"] is linear_wait_for_rpcs
    recorder = run_program(register_one)
    assert [r.name for r in recorder.by_type("kubernetes:core/v1:ConfigMap")] == ["probe"]

    def nested(value: str) -> pulumi.Output[str]:
        return pulumi.Output.from_input(value + "y")

    def failing_apply() -> None:
        derived: pulumi.Output[str] = pulumi.Output.from_input("x").apply(nested)
        derived.apply(lambda v: 1 / len(v[2:]))

    with pytest.raises(ZeroDivisionError):
        run_program(failing_apply)
