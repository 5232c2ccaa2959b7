"""Shared fixtures: where the repository and its example roster are."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def example_roster() -> Path:
    return REPO / "roster.yaml"
