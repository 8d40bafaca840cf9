"""IngestService.Publish in process: a client that closes its call leaves no task behind.

A real pipeline on the run's PostgreSQL and Redis behind a real gRPC server; the test looks at
the server's own event loop (the test's), where the float version left the ack waiter of every
closed call pending ("Task was destroyed but it is pending!" after each `tickmesh import`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
from grpc import aio

from tickmesh.bars.bar_cache import BarCache
from tickmesh.bars.bar_metrics import BarMetrics
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.ingest_pipeline import IngestPipeline
from tickmesh.bars.ingest_service import IngestServicer
from tickmesh.bars.store import BarStore
from tickmesh.bars.subscriptions import BarHub
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.sharding import Shard
from tickmesh.v2 import ingest_service_pb2, ingest_service_pb2_grpc, market_pb2

START_NS = 1_700_000_040 * 1_000_000_000


@pytest.fixture
async def ingest_address(db_pool: asyncpg.Pool, fresh_redis_url: str) -> AsyncIterator[str]:
    """An IngestService on a free port, served from this test's event loop."""
    client = redis.Redis.from_url(fresh_redis_url)
    core = CoreMetrics()
    metrics = BarMetrics(core)
    pipeline = IngestPipeline(
        BarEngine(),
        BarStore(db_pool, core, Shard()),
        BarCache(client, core, 100),
        BarHub(100),
        metrics,
        Shard(),
        commit_interval_seconds=0.01,
        forming_interval_seconds=0.25,
    )
    await pipeline.start()
    server = aio.server()
    ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(
        IngestServicer(pipeline, metrics), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)
    await pipeline.stop()
    await client.aclose()


def _pending_ack_waiters() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "Queue.get" in repr(task.get_coro())
    ]


async def test_publish_closed_by_the_client_leaves_no_pending_task(
    ingest_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_USDM,
        symbol="CLOSEUSDT",
        trade_ids=[1],
        prices=[6170008],
        quantities=[2],
        price_scale=2,
        quantity_scale=3,
        event_time_ns=[START_NS],
    )
    batch = market_pb2.TradeBatch(stream_id="close-test", sequence=1, trades=[run])
    requests: asyncio.Queue[ingest_service_pb2.PublishRequest | None] = asyncio.Queue()

    async def stream() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        while (request := await requests.get()) is not None:
            yield request

    async with aio.insecure_channel(ingest_address) as channel:
        call = ingest_service_pb2_grpc.IngestServiceStub(channel).Publish(stream())
        await requests.put(ingest_service_pb2.PublishRequest(batch=batch))
        ack = await asyncio.wait_for(call.read(), timeout=10)
        assert isinstance(ack, ingest_service_pb2.PublishResponse)
        assert ack.acked_sequence == 1
        # The servicer now waits for the next ack; the client goes away (as `tickmesh import`
        # does when it has what it sent acknowledged).
        assert _pending_ack_waiters() != []
        call.cancel()
        await requests.put(None)
    for _ in range(100):
        if not _pending_ack_waiters():
            break
        await asyncio.sleep(0.02)
    assert _pending_ack_waiters() == []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
        await asyncio.sleep(0)
    assert "Task was destroyed but it is pending" not in caplog.text
