"""A measured cost of the Pulumi Python SDK that the program opts out of (see bench/RESULTS.md).

The SDK sends each of its debug messages ("registering resource ...", "resource registration
prepared ...", "beginning rpc ...": about 4.5 per resource) to the engine as a *synchronous* Log RPC,
and the engine drops them unless it runs with ``--debug``. At 1,000 freelancers (7,200 resources) that
is 32,000 blocking round trips, 63 s of the program's main thread in a profiled preview, and 13 % of
the preview's wall time (255 s -> 222 s, same roster, measured with ``PULUMI_SKIP_CHECKPOINTS=true``).

Only debug messages are dropped; info, warnings and errors go through as before. To get the SDK's
debug messages back (together with ``pulumi up --debug``), set ``SANDBOX_INFRA_SDK_DEBUG=1``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pulumi

SDK_DEBUG_ENV = "SANDBOX_INFRA_SDK_DEBUG"


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
