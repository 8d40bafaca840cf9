"""The asyncpg pool, opened with retries so a database that starts late is waited for."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.startup import connect_with_retry

# A plain connection or one borrowed from a pool; both run the same queries.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def open_pool(
    dsn: str,
    metrics: CoreMetrics,
    min_size: int = 1,
    max_size: int = 10,
    give_up_after_seconds: float = 60.0,
) -> asyncpg.Pool:
    """Open a pool to `dsn`, retrying with backoff while the server is unreachable."""

    async def connect() -> asyncpg.Pool:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10)
        if pool is None:  # asyncpg types say Optional; a failed connect raises instead
            raise ConnectionError("asyncpg returned no pool")
        return pool

    return await connect_with_retry(
        "postgresql",
        connect,
        metrics,
        give_up_after_seconds,
        # "the database system is starting up / shutting down", "too many clients": wait.
        transient=(asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError),
    )
