"""Pulumi entry point for profiling runs: the project's ``__main__.py`` under cProfile.

``python -m bench`` copies this over ``__main__.py`` in its temporary project for the profiled
preview. cProfile sees only the main thread: the program, the SDK's event loop and serialization, and
the time that thread spends blocked on the engine (synchronous RPCs such as log messages). The
resource-registration RPCs themselves run in the SDK's thread pool and show up as waiting.
"""

import atexit
import cProfile
import os

from sandbox_infra.program import main

_profiler = cProfile.Profile()


def _dump() -> None:
    _profiler.disable()
    _profiler.dump_stats(os.environ["BENCH_PROFILE"])


atexit.register(_dump)
_profiler.enable()
main()
