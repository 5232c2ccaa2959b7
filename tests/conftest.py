"""Shared fixtures: where the repository and its example roster are; the hypothesis profiles and ``--soak``.

Property-based tests run a fast sample by default (profile ``fast``), the same sample derandomized in CI
(``ci``: ``CI`` is set), and many more examples under ``make soak`` (``pytest --soak``: profile ``soak``).
``HYPOTHESIS_PROFILE`` picks another one by name; ``SOAK_EXAMPLES`` sets the soak profile's count.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
# No deadline: a slow example is not a failure here (no timed assertions in tests; bench/ measures). A hang
# still ends: tests/unit/hostile.py interrupts a check after a minute.
settings.register_profile("fast", max_examples=60, deadline=None, suppress_health_check=_SLOW_DATA)
settings.register_profile("ci", parent=settings.get_profile("fast"), derandomize=True, database=None)
settings.register_profile(
    "soak",
    max_examples=int(os.environ.get("SOAK_EXAMPLES", "5000")),
    deadline=None,
    suppress_health_check=_SLOW_DATA,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak", action="store_true", help="long reliability runs: the soak hypothesis profile (make soak)"
    )


def pytest_configure(config: pytest.Config) -> None:
    default = "soak" if config.getoption("--soak") else "ci" if os.environ.get("CI") else "fast"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    """True under ``make soak``: a test may then run its long form."""
    return bool(request.config.getoption("--soak"))


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def example_roster() -> Path:
    return REPO / "roster.yaml"
