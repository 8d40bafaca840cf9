"""PostgreSQL stops mid-replay: the bar service keeps accepting, retries its commits, loses nothing.

The test owns an embedded PostgreSQL (never the machine's shared server), stops it with pg_ctl
while trades keep arriving, and starts it again on the same data directory; the final bars
equal those of an uninterrupted replay.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import asyncpg
import redis.asyncio as redis

from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import market_pb2

from .grpc_helpers import wait_serving
from .ingest_helpers import capture_batches, fixtures_root, publish_until_acked
from .mesh_processes import ServiceProcess
from .test_bar_chaos import CAPTURE, BarKey, BarValues, settled_bars

OUTAGE_SECONDS = 4.0


async def _replay(
    servers: EmbeddedServers,
    database_url: str,
    redis_url: str,
    batches: list[market_pb2.TradeBatch],
    outage: bool,
) -> dict[BarKey, BarValues]:
    """Replay through a fresh bar service; with `outage`, stop PostgreSQL once halfway through."""
    cache = redis.Redis.from_url(redis_url)
    await cache.flushdb()
    await cache.aclose()
    bars = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": database_url,
            "TICKMESH_REDIS_URL": redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
        },
    )
    await bars.start()
    try:
        half = len(batches) // 2
        assert await publish_until_acked(bars.address, batches[:half]) == half
        if outage:
            await asyncio.to_thread(servers.stop_postgres_server)
        publisher = asyncio.create_task(publish_until_acked(bars.address, batches[half:], 0.002))
        if outage:
            await asyncio.sleep(OUTAGE_SECONDS)
            assert not publisher.done(), "batches were acknowledged while PostgreSQL was down"
            await wait_serving(bars.address, within_seconds=2)
            assert await bars.metric("tickmesh_bars_commit_failures_total") > 0
            await asyncio.to_thread(servers.restart_postgres_server)
        assert await asyncio.wait_for(publisher, timeout=60) == batches[-1].sequence
        return await settled_bars(bars.address)
    finally:
        await bars.kill()


async def test_postgres_down_mid_replay_loses_nothing(fresh_redis_url: str) -> None:
    batches = capture_batches(
        fixtures_root() / CAPTURE, market_pb2.EXCHANGE_BINANCE_USDM, "outage", batch_size=100
    )
    # Not pytest's tmp_path: its parent is private to root, and the server may run as another user.
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-outage-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        admin_url = servers.start_postgres()
        results = []
        for name, outage in (("calm", False), ("outage", True)):
            admin = await asyncpg.connect(admin_url)
            try:
                await admin.execute(f"CREATE DATABASE {name}")
            finally:
                await admin.close()
            database_url = admin_url.replace("/tickmesh?", f"/{name}?")
            results.append(await _replay(servers, database_url, fresh_redis_url, batches, outage))
    uninterrupted, interrupted = results
    assert interrupted == uninterrupted
