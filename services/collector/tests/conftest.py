"""Shared fixtures for the collector tests: where the read-only market-data fixtures live."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickmesh.core.fixtures import fixtures_root


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared fixtures directory, read in place (never copied or edited)."""
    root = fixtures_root()
    assert root.is_dir(), f"fixtures not found at {root}; set TICKMESH_FIXTURES"
    return root
