"""The example stack, declared once by the real program under mocks, and the pack's patches of the SDK."""

from __future__ import annotations

import pytest
from sandbox_policies import once, secrets

from tests.conftest import REPO
from tests.policy.harness import Declared, declare_example


@pytest.fixture(scope="session", autouse=True)
def _secret_marking() -> None:
    """What policies/__main__.py does before serving the pack."""
    secrets.install()
    once.install()


@pytest.fixture(scope="session")
def example_stack() -> list[Declared]:
    return declare_example(REPO / "roster.yaml")


@pytest.fixture
def stack(example_stack: list[Declared]) -> list[Declared]:
    """A fresh list per test (resources are replaced, never edited in place: see Declared.edited)."""
    return list(example_stack)
