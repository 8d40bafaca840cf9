"""Two bar shards, two analytics shards and a gateway: analytics shard i computes bar shard i's instruments.

Trades go straight into each instrument's owner bar shard. The test shows each analytics
shard consumes only its own bar shard's stream (its own resume point, its own bars), streams
live updates of its own instruments and refuses another shard's (FAILED_PRECONDITION naming
the owner), and that the gateway serves indicators of instruments on both shards and lists
both analytics shards in its health.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
from grpc import aio

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_of
from tickmesh.v2 import analytics_service_pb2, analytics_service_pb2_grpc, market_pb2

from .gateway.processes import ADMIN, GatewayProcess, login, start_gateway
from .ingest_helpers import final_minute_trades, publish_until_acked
from .mesh_processes import ServiceProcess, bar_shard_processes

SHARDS = 2
# Simulator-venue instruments, two per shard (crc32("simulator:<symbol>") mod 2).
CANDIDATES = [f"SHARD{i}" for i in range(40)]
MINUTE_MS = 60_000
WITHIN_SECONDS = 30.0


def _instrument(symbol: str) -> InstrumentId:
    return InstrumentId.parse(f"simulator:{symbol}")


SYMBOLS = {
    shard: [s for s in CANDIDATES if shard_of(_instrument(s), SHARDS) == shard][:2]
    for shard in range(SHARDS)
}


def _trades(symbol: str, minute_ms: int, first_id: int, sequence: int) -> market_pb2.TradeBatch:
    """Batch `sequence` of the symbol's test stream: one final minute and the start of the next."""
    trades = final_minute_trades(symbol, minute_ms, first_id)
    return market_pb2.TradeBatch(stream_id=f"test-{symbol}", sequence=sequence, trades=[trades])


async def _publish(bars: list[ServiceProcess], minute_ms: int, sequence: int) -> None:
    """One final minute (and the start of the next) for every symbol, into its owner shard."""
    for shard, symbols in SYMBOLS.items():
        for symbol in symbols:
            batches = [
                _trades(symbol, minute_ms + MINUTE_MS * k, 1 + 4 * k, 1 + k)
                for k in range(sequence)
            ]
            await publish_until_acked(bars[shard].address, batches)


@pytest.fixture
async def mesh(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[list[ServiceProcess], list[ServiceProcess], GatewayProcess]]:
    """Two bar shards, two analytics shards (each paired with its bar shard) and a gateway."""
    common = {
        "TICKMESH_DATABASE_URL": fresh_database_url,
        "TICKMESH_REDIS_URL": fresh_redis_url,
        "TICKMESH_DRAIN_SECONDS": "1",
    }
    bars = bar_shard_processes(common, SHARDS)
    routed = common | {"TICKMESH_BARS_ADDRESSES": ",".join(b.address for b in bars)}
    analytics = [
        ServiceProcess(
            "analytics",
            routed
            | {
                "TICKMESH_ANALYTICS_SHARD_INDEX": str(index),
                "TICKMESH_ANALYTICS_SHARD_COUNT": str(SHARDS),
                "TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20",
            },
        )
        for index in range(SHARDS)
    ]
    started: list[ServiceProcess] = []
    gateway: GatewayProcess | None = None
    try:
        await asyncio.gather(*(b.start() for b in bars))
        started += bars
        await asyncio.gather(*(a.start() for a in analytics))
        started += analytics
        gateway = await start_gateway(
            fresh_database_url,
            fresh_redis_url,
            tmp_path / "gateway.log",
            TICKMESH_BARS_ADDRESSES=routed["TICKMESH_BARS_ADDRESSES"],
            TICKMESH_ANALYTICS_ADDRESSES=",".join(a.address for a in analytics),
            TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS="5",
            TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE="100000",
        )
        yield bars, analytics, gateway
    finally:
        if gateway is not None:
            await gateway.stop()
        for process in reversed(started):
            await process.kill()


async def _indicator_times(client: httpx.AsyncClient, instrument: InstrumentId) -> set[int]:
    reply = await client.get(f"/api/v1/charts/{instrument}", params={"timeframe": "1m"})
    assert reply.status_code == 200, reply.text
    return {row["time"] * 1000 for row in reply.json()["indicators"] or []}


async def _wait_indicators(client: httpx.AsyncClient, minute_ms: int) -> None:
    """Wait until the gateway has indicators of `minute_ms` for every symbol of both shards."""
    deadline = time.monotonic() + WITHIN_SECONDS
    missing = {_instrument(s) for symbols in SYMBOLS.values() for s in symbols}
    while missing:
        for instrument in sorted(missing):
            if minute_ms in await _indicator_times(client, instrument):
                missing.discard(instrument)
        assert time.monotonic() < deadline, f"no indicators yet for {sorted(missing)}"
        await asyncio.sleep(0.2)


def _subscribe(
    channel: aio.Channel, instrument: InstrumentId
) -> aio.UnaryStreamCall[object, object]:
    stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
    request = analytics_service_pb2.AnalyticsServiceSubscribeRequest(
        instruments=[instrument.to_proto()], timeframes=[market_pb2.TIMEFRAME_1M]
    )
    return stub.Subscribe(request)


async def test_each_analytics_shard_computes_and_streams_its_bar_shards_instruments(
    mesh: tuple[list[ServiceProcess], list[ServiceProcess], GatewayProcess],
    fresh_database_url: str,
) -> None:
    bars, analytics, gateway = mesh
    first_minute_ms = (int(time.time() * 1000) // MINUTE_MS - 5) * MINUTE_MS
    await _publish(bars, first_minute_ms, 1)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        client.headers.update(await login(client, *ADMIN))
        await _wait_indicators(client, first_minute_ms)
        health = (await client.get("/api/v1/health")).json()["components"]
        assert health["analytics-0"]["status"] == health["analytics-1"]["status"] == "serving"

        # Each shard consumed its own bar shard's stream, resuming from its own point.
        for shard in range(SHARDS):
            assert await analytics[shard].metric("tickmesh_analytics_bars_consumed_total") > 0
        connection = await asyncpg.connect(fresh_database_url)
        try:
            points = await connection.fetch(
                "SELECT consumer, last_change_id FROM analytics_consumer_state"
            )
        finally:
            await connection.close()
        assert sorted(r["consumer"] for r in points) == [
            "analytics:bars-0-of-2",
            "analytics:bars-1-of-2",
        ]
        assert all(r["last_change_id"] > 0 for r in points)

        # Live updates of an instrument come from its own shard; another shard refuses it.
        channels = [aio.insecure_channel(process.address) for process in analytics]
        for shard in range(SHARDS):
            instrument = _instrument(SYMBOLS[shard][0])
            refused = _subscribe(channels[1 - shard], instrument)
            with pytest.raises(aio.AioRpcError) as error:
                await refused.read()
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert f"belongs to analytics shard {shard} of 2" in (error.value.details() or "")
        live = {
            shard: _subscribe(channels[shard], _instrument(SYMBOLS[shard][0]))
            for shard in range(SHARDS)
        }
        try:
            await asyncio.sleep(0.5)  # the subscriptions are open before the next minute
            await _publish(bars, first_minute_ms, 2)
            for shard, call in live.items():
                async with asyncio.timeout(WITHIN_SECONDS):
                    while True:
                        update = await call.read()
                        assert update is not grpc.aio.EOF
                        if update.HasField("indicators"):
                            break
                row = update.indicators
                assert row.symbol == SYMBOLS[shard][0]
                assert row.open_time_ns >= (first_minute_ms + MINUTE_MS) * 1_000_000
        finally:
            for call in live.values():
                call.cancel()
            for channel in channels:
                await channel.close()
        await _wait_indicators(client, first_minute_ms + MINUTE_MS)
