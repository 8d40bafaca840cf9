"""Fixtures shared by the whole-process tests under tests/."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .mesh_processes import ServiceProcess


@pytest.fixture
async def bars(fresh_database_url: str, fresh_redis_url: str) -> AsyncIterator[ServiceProcess]:
    """A bar service process on its own empty database, committing every 20 ms."""
    process = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
        },
    )
    await process.start()
    yield process
    await process.kill()


@pytest.fixture
async def analytics(
    bars: ServiceProcess, fresh_database_url: str, fresh_redis_url: str
) -> AsyncIterator[ServiceProcess]:
    """An analytics process reading `bars`, on the same database, committing every 20 ms."""
    process = ServiceProcess(
        "analytics",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_ADDRESSES": bars.address,
            "TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20",
        },
    )
    await process.start()
    yield process
    await process.kill()
