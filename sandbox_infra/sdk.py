"""Measured costs of the Pulumi Python SDK that the program opts out of (see bench/RESULTS.md).

**Debug messages.** The SDK sends each of its debug messages ("registering resource ...", "resource
registration prepared ...", "beginning rpc ...": about 4.5 per resource) to the engine as a *synchronous*
Log RPC, and the engine drops them unless it runs with ``--debug``. At 1,000 freelancers (7,200 resources)
that is 32,000 blocking round trips, 63 s of the program's main thread in a profiled preview, and 13 % of
the preview's wall time (255 s -> 222 s, same roster, measured with ``PULUMI_SKIP_CHECKPOINTS=true``).

Only debug messages are dropped; info, warnings and errors go through as before. To get the SDK's
debug messages back (together with ``pulumi up --debug``), set ``SANDBOX_INFRA_SDK_DEBUG=1``.

**The wait at exit.** After the program returns, the SDK's ``wait_for_rpcs`` waits for every outstanding
Output with ``asyncio.wait(pending, return_when=FIRST_COMPLETED)`` in a loop: each completion wakes it,
and each wake removes and re-adds a done-callback on every Output still pending. At 7,000 resources that
is 4.7 million ``add_done_callback`` calls and 126 s of the main thread. :func:`linear_wait_for_rpcs`
keeps its semantics with one callback per Output, and :func:`install_linear_wait` puts it in place only
over the exact SDK source it was written against. To keep the SDK's own wait (to compare the two in a
benchmark), set ``SANDBOX_INFRA_SDK_ORIGINAL_WAIT=1``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi.runtime.settings
import pulumi.runtime.stack
from pulumi.runtime.settings import SETTINGS, _get_rpc_manager

SDK_DEBUG_ENV = "SANDBOX_INFRA_SDK_DEBUG"
SDK_ORIGINAL_WAIT_ENV = "SANDBOX_INFRA_SDK_ORIGINAL_WAIT"

WAIT_FOR_RPCS_SDK_VERSION = "3.272.0"
"""The ``pulumi`` distribution whose ``pulumi.runtime.stack.wait_for_rpcs`` :func:`linear_wait_for_rpcs`
was written against. The version is pinned as well as the source because the semantics also rest on code
around it (``Output._track`` and its done-callback, ``RPCManager``), which the hash does not cover."""

WAIT_FOR_RPCS_SHA256 = "c0f9027f85ad09255ded0a1908033b490f76d303a3e40b50d3cf47a69265469d"
"""sha256 of ``inspect.getsource(pulumi.runtime.stack.wait_for_rpcs)`` in that version. When either
differs, :func:`install_linear_wait` leaves the SDK alone, and ``tests/unit/test_sdk.py`` fails so that
the shim gets re-reviewed against the new source."""

WaitForRpcs = Callable[..., Any]


def _drop(msg: str, *args: Any, **kwargs: Any) -> None:
    """Stands in for :func:`pulumi.log.debug`."""


def quiet_debug_logs(environ: Mapping[str, str] = os.environ) -> bool:
    """Drop the SDK's debug messages unless ``SANDBOX_INFRA_SDK_DEBUG`` is set; return whether they are.

    The SDK calls them as ``log.debug(...)`` on the module (``from .. import log``), so replacing the
    module attribute reaches every call site."""
    if environ.get(SDK_DEBUG_ENV, "") not in ("", "0", "false"):
        return False
    pulumi.log.debug = _drop
    return True


def wait_for_rpcs_fingerprint(func: WaitForRpcs) -> tuple[str, str] | None:
    """The installed ``pulumi`` version and the sha256 of ``func``'s source, or None without a source.

    Compared with (:data:`WAIT_FOR_RPCS_SDK_VERSION`, :data:`WAIT_FOR_RPCS_SHA256`) so that the shim never
    replaces a ``wait_for_rpcs`` it has not been reviewed against."""
    try:
        source = inspect.getsource(func)
        version = importlib.metadata.version("pulumi")
    except (OSError, TypeError, importlib.metadata.PackageNotFoundError):
        return None
    return version, hashlib.sha256(source.encode()).hexdigest()


async def linear_wait_for_rpcs(await_all_outstanding_tasks: bool = True) -> None:
    """``pulumi.runtime.stack.wait_for_rpcs`` of pulumi 3.272.0, with the wait for Outputs made linear.

    The RPC half is the SDK's, statement for statement (it awaits one RPC at a time, which is already
    linear). The Output half is :func:`_wait_for_outputs`. The outer loop repeats both until no RPC is
    left, as the SDK does. Exceptions are raised as the SDK raises them: a failed RPC re-raised with the
    first unhandled RPC exception as its cause, then the first unhandled RPC exception itself, then the
    first Output that fails or is cancelled."""
    pulumi.log.debug("Waiting for outstanding RPCs to complete")

    rpc_manager = _get_rpc_manager()
    while True:
        while len(rpc_manager.rpcs) > 0:
            await asyncio.sleep(0)
            if pulumi.runtime.settings.excessive_debug_output:
                pulumi.log.debug(f"waiting for quiescence; {len(rpc_manager.rpcs)} RPCs outstanding")
            try:
                await rpc_manager.rpcs.pop()
            except Exception as exn:
                if rpc_manager.unhandled_exception is not None:
                    cause = rpc_manager.unhandled_exception.with_traceback(rpc_manager.exception_traceback)
                    raise exn from cause
                raise

        if rpc_manager.unhandled_exception is not None:
            raise rpc_manager.unhandled_exception.with_traceback(rpc_manager.exception_traceback)

        pulumi.log.debug("RPCs successfully completed")

        if await_all_outstanding_tasks:
            await _wait_for_outputs()
            pulumi.log.debug("All outstanding outputs completed.")

        if len(rpc_manager.rpcs) == 0:
            break


async def _wait_for_outputs() -> None:
    """Wait for every task in ``SETTINGS.outputs``, including those added while waiting; raise the first failure.

    The SDK takes the set's tasks out (so that tasks added meanwhile collect in it), waits until one of
    them completes, awaits those that did (raising the first failure), puts the rest back, and repeats
    until the set is empty: every completion costs a callback added to and removed from every pending
    task. This keeps that schedule, waking on every completion, taking out what was added since and
    awaiting what completed, in completion order, but adds one callback per task, once. So it raises the
    same exception as the SDK: the first task to fail (or be cancelled) among those the SDK is waiting
    for, and an Output that is untracked (``Output.recover``, ``apply``) before it is taken out is not
    waited for, in both. (The SDK also awaits tasks that completed just before it woke but whose callbacks
    have not run yet, in set order; this awaits them on its next wake, one turn of the event loop later, in
    the order they completed. Only failures within a turn or two of each other can be raised differently,
    and the SDK's choice among those depends on set order.) A wait that only waits for each snapshot of
    the set as a whole (``asyncio.wait(..., FIRST_EXCEPTION)``, ``gather``) would not be the same: an Output
    created while waiting and failing first would only be raised after every earlier one completed, or
    another failure instead. On an exception the tasks still pending are dropped, as the SDK drops them."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Future[Any]] = set()
    completed: list[asyncio.Future[Any]] = []
    wake: asyncio.Future[None] = loop.create_future()

    def on_done(task: asyncio.Future[Any]) -> None:
        pending.discard(task)
        completed.append(task)
        if not wake.done():
            wake.set_result(None)

    try:
        while True:
            # The SDK's contextproperty descriptors are typed for mypy only (pyright: basedpyright in make lint).
            with SETTINGS.lock:  # pyright: ignore[reportAttributeAccessIssue]
                added: list[asyncio.Future[Any]] = list(SETTINGS.outputs)  # pyright: ignore[reportAttributeAccessIssue]
                SETTINGS.outputs.clear()  # pyright: ignore[reportAttributeAccessIssue]
            for task in added:
                if task not in pending:
                    pending.add(task)
                    task.add_done_callback(on_done)
            if not pending and not completed:
                break
            if not completed:
                wake = loop.create_future()
                await wake
            done = completed.copy()
            completed.clear()
            for task in done:
                await task
    finally:
        for task in pending:
            task.remove_done_callback(on_done)


def install_linear_wait(environ: Mapping[str, str] = os.environ) -> bool:
    """Replace the SDK's ``wait_for_rpcs`` with :func:`linear_wait_for_rpcs`; return whether it is in place.

    Only when the SDK's function is the one the shim was written against (:func:`wait_for_rpcs_fingerprint`),
    and not when ``SANDBOX_INFRA_SDK_ORIGINAL_WAIT`` is set. The SDK calls it from ``run_pulumi_func``, which
    ``run_in_stack`` runs after the program returns, as ``stack``'s module global, so installing it while the
    program runs is in time. The provider servers (and tests/unit/mocks.py) hold their own reference
    (``from pulumi.runtime.stack import wait_for_rpcs``): every loaded module's is replaced; modules loaded
    later import the replacement."""
    if environ.get(SDK_ORIGINAL_WAIT_ENV, "") not in ("", "0", "false"):
        return False
    original: WaitForRpcs = pulumi.runtime.stack.wait_for_rpcs
    if original is linear_wait_for_rpcs:
        return True
    if wait_for_rpcs_fingerprint(original) != (WAIT_FOR_RPCS_SDK_VERSION, WAIT_FOR_RPCS_SHA256):
        return False
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict) and namespace.get("wait_for_rpcs") is original:
            namespace["wait_for_rpcs"] = linear_wait_for_rpcs
    return True
