"""BarService.Replay over real gRPC and PostgreSQL: a reader that stops reading stalls it.

The replay reads the next page of bar_versions only once the previous page was sent, and a
send waits while the client's flow-control window is full, so a stalled reader holds the
server at a page or so, not the whole range in memory; reading again finishes the replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
from grpc import aio

from tickmesh.bars.bar_cache import BarCache
from tickmesh.bars.bar_metrics import BarMetrics
from tickmesh.bars.bar_service import BarServicer
from tickmesh.bars.store import BarStore
from tickmesh.bars.subscriptions import BarHub
from tickmesh.core.db.migrations import migrate
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.replay import DEFAULT_PAGE_SIZE, raw_response_methods
from tickmesh.core.sharding import Shard
from tickmesh.v2 import bar_service_pb2_grpc, market_pb2, replay_pb2

VERSIONS = 100_000  # 20 pages, about 12 MB of responses: far more than the windows hold
PAGES = "tickmesh_bars_replay_pages_total"


@pytest.fixture
async def served(
    fresh_database_url: str, fresh_redis_url: str
) -> AsyncIterator[tuple[str, CoreMetrics]]:
    """A BarService on a free port over a database of VERSIONS stored versions."""
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn)
        message = market_pb2.Bar(
            symbol="BTCUSDT", open="61700.8", close="61701.2", final=True
        ).SerializeToString()
        await conn.execute(
            "INSERT INTO instruments (exchange, symbol) VALUES ('binance_usdm', 'BTCUSDT')"
        )
        await conn.execute(
            "INSERT INTO bar_versions (instrument_id, timeframe, time, open, high, low, "
            "close, volume, quote_volume, trade_count, vwap, revision, change_id, "
            "committed_at, message) SELECT (SELECT id FROM instruments), '1m', "
            "to_timestamp(i * 60), 1, 1, 1, 1, 1, 1, 1, 1, 0, i, "
            "now() - ($1 - i) * interval '1 millisecond', $2 FROM generate_series(1, $1) AS i",
            VERSIONS,
            message,
        )
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    client = redis.Redis.from_url(fresh_redis_url)
    core = CoreMetrics()
    servicer = BarServicer(
        BarStore(pool, core, Shard()),
        BarCache(client, core, 100),
        BarHub(100),
        BarMetrics(core),
    )
    server = aio.server()
    raw_response_methods(bar_service_pb2_grpc.add_BarServiceServicer_to_server, "Replay")(
        servicer, server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", core
    await server.stop(None)
    await client.aclose()
    await pool.close()


async def test_a_reader_that_stops_reading_stalls_the_replay_until_it_reads_again(
    served: tuple[str, CoreMetrics],
) -> None:
    address, core = served

    def pages() -> float:
        return core.registry.get_sample_value(PAGES) or 0.0

    start = replay_pb2.ReplayStart(speed=0)
    # Without BDP probing the client's windows stay at their initial 64 KiB; with it gRPC may
    # grow them to several MiB before the server has to wait, which only takes longer.
    async with aio.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        call = channel.stream_stream(
            "/tickmesh.v2.BarService/Replay",
            request_serializer=replay_pb2.ReplayRequest.SerializeToString,
        )(iter([replay_pb2.ReplayRequest(start=start)]))
        responses = call.__aiter__()
        received = [await anext(responses)]
        # The server sends until the windows (which grow) are full, then waits: no page read
        # for two seconds, where it reads a page in well under one while the client reads.
        stalled_at = -1.0
        for _ in range(15):
            if pages() == stalled_at:
                break
            stalled_at = pages()
            await asyncio.sleep(2.0)
        assert pages() == stalled_at
        assert stalled_at <= 3
        received.extend([raw async for raw in responses])
    assert len(received) == VERSIONS
    assert pages() == VERSIONS // DEFAULT_PAGE_SIZE + 1  # the last, short page ends it
