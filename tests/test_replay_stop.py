"""A service with replays left behind stops promptly on SIGTERM.

Whole processes over real PostgreSQL: an analytics replay at maximum speed to a client that
stops reading (so the service's send waits on flow control), then the client either cancels
the call or keeps it open. Either way SIGTERM must end the process within its drain and a
little more: a session holding on (a request stream read, a page task, a generator nobody
closes) would keep the gRPC server from finishing its shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tickmesh.core.db.migrations import migrate
from tickmesh.v2 import market_pb2, replay_pb2

from .mesh_processes import ServiceProcess

REPLAY = "/tickmesh.v2.AnalyticsService/Replay"
DRAIN_SECONDS = 1.0
# The drain, then the final commit and closing the pools: well under the 20 s a test
# harness or an orchestrator waits before SIGKILL.
STOPS_WITHIN_SECONDS = DRAIN_SECONDS + 4.0


@pytest.fixture
async def analytics_with_a_log(
    fresh_database_url: str, fresh_redis_url: str
) -> AsyncIterator[ServiceProcess]:
    """Bars and analytics processes over a log of 300 updates of 64 KiB (far more than the
    transport buffers hold)."""
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn)
        await conn.executemany(
            "INSERT INTO analytics_update_log (committed_at, exchange, symbol, timeframe, "
            "message) VALUES (now(), 'simulator', 'STALL', '1m', $1)",
            [(bytes([index % 256]) * 65_536,) for index in range(300)],
        )
    finally:
        await conn.close()
    env = {
        "TICKMESH_DATABASE_URL": fresh_database_url,
        "TICKMESH_REDIS_URL": fresh_redis_url,
        "TICKMESH_DRAIN_SECONDS": str(DRAIN_SECONDS),
    }
    bars = ServiceProcess("bars", env)
    await bars.start()
    analytics = ServiceProcess("analytics", env | {"TICKMESH_BARS_ADDRESS": bars.address})
    try:
        await analytics.start()
        yield analytics
    finally:
        await analytics.kill()
        await bars.kill()


@pytest.mark.parametrize("client", ["cancels", "keeps the call open"])
async def test_sigterm_stops_a_service_with_a_stalled_replay_promptly(
    analytics_with_a_log: ServiceProcess, client: str
) -> None:
    channel = analytics_with_a_log.channel()
    replay = channel.stream_stream(
        REPLAY, request_serializer=replay_pb2.ReplayRequest.SerializeToString
    )
    instrument = market_pb2.Instrument(exchange=market_pb2.EXCHANGE_SIMULATOR, symbol="STALL")
    never = asyncio.Event()

    async def requests() -> AsyncIterator[replay_pb2.ReplayRequest]:
        yield replay_pb2.ReplayRequest(
            start=replay_pb2.ReplayStart(instruments=[instrument], speed=0)
        )
        await never.wait()  # the request stream stays open, as a steering client's does

    try:
        call = replay(requests())
        await call.read()
        await asyncio.sleep(1.0)  # reading nothing: the service's sends wait
        if client == "cancels":
            call.cancel()
            await asyncio.sleep(0.2)
        started = time.monotonic()
        status = await asyncio.wait_for(analytics_with_a_log.stop(), STOPS_WITHIN_SECONDS)
        assert status == 0
        assert time.monotonic() - started < STOPS_WITHIN_SECONDS
    finally:
        await channel.close()
