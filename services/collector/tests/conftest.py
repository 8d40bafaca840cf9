"""Shared fixtures for the collector tests: where the read-only market-data fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def fixtures_root() -> Path:
    """The shared fixtures directory: $TICKMESH_FIXTURES or <workspace>/shared/fixtures."""
    env = os.environ.get("TICKMESH_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared fixtures directory, read in place (never copied or edited)."""
    root = fixtures_root()
    assert root.is_dir(), f"fixtures not found at {root}; set TICKMESH_FIXTURES"
    return root
