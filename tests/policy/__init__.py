"""Policy tests: every policy of policies/ has a passing and a failing case.

The pack is its own program (the engine runs policies/__main__.py with policies/ as its first import
path), so its package is imported the same way here.
"""

from __future__ import annotations

import sys
from pathlib import Path

_POLICIES = str(Path(__file__).resolve().parents[2] / "policies")
if _POLICIES not in sys.path:
    sys.path.insert(0, _POLICIES)
