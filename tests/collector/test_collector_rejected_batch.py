"""A batch the bar service rejects is set aside, named and counted; the stream goes on.

Without this the collector would resend the malformed batch on every reconnect and never
deliver anything after it. A real bar service rejects a batch whose symbol is too long
(INVALID_ARGUMENT, trailing metadata naming its sequence); the ingest client takes it out
of its resend queue, hands it to `on_rejected` and delivers every other batch.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets

import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.collector.ingest_state import keep_rejected, rejected_key
from tickmesh.v2 import market_pb2

from ..mesh_processes import ServiceProcess

T0 = 1_714_521_600_000_000_000  # 2024-05-01 00:00 UTC


def _run(symbol: str, first_id: int) -> market_pb2.SymbolTrades:
    ids = list(range(first_id, first_id + 10))
    return market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol=symbol,
        trade_ids=ids,
        prices=[100] * len(ids),
        quantities=[1] * len(ids),
        event_time_ns=[T0 + i * 1_000_000_000 for i in ids],
    )


async def test_rejected_batch_is_set_aside_and_the_rest_delivered(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    bars = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
        },
    )
    await bars.start()
    metrics = CollectorMetrics(CollectorRegistry())
    rejected: list[tuple[int, str]] = []

    async def set_aside(batch: market_pb2.TradeBatch, reason: str) -> None:
        rejected.append((batch.sequence, reason))

    client = IngestClient(
        IngestConfig(
            address=bars.address,
            stream_id=f"reject-{secrets.token_hex(4)}",
            max_batch_trades=10,
            reconnect_initial_s=0.01,
            reconnect_max_s=0.1,
        ),
        metrics,
        on_rejected=set_aside,
    )
    runs = [_run("GOODUSDT", 1 + 10 * i) for i in range(5)]
    runs.insert(2, _run("X" * 25, 1))  # 25 characters: no symbol is that long
    client.submit(runs)
    runner = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(30):
            await client.flush()
        assert [sequence for sequence, _ in rejected] == [3]
        assert "symbol" in rejected[0][1]
        assert metrics.ingest_batches.labels(outcome="rejected")._value.get() == 1
        assert client.acked_sequence == 6
        accepted = await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"')
        assert accepted == 50
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await bars.kill()


async def test_the_collector_keeps_rejected_batches_in_redis(redis_client: redis.Redis) -> None:
    batch = market_pb2.TradeBatch(
        stream_id=f"reject-{secrets.token_hex(4)}", sequence=7, trades=[_run("X" * 25, 1)]
    )
    await keep_rejected(redis_client, batch, "batch.trades[0].symbol: too long")
    raw = await redis_client.lindex(rejected_key(batch.stream_id), 0)
    assert raw is not None
    kept = json.loads(raw)
    assert kept["sequence"] == 7
    assert kept["reason"] == "batch.trades[0].symbol: too long"
    assert market_pb2.TradeBatch.FromString(base64.b64decode(kept["batch"])) == batch
