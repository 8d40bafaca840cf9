"""Two collector shards, two bar shards, analytics and one gateway: every instrument served, by one shard.

The exchange simulator random-walks eight Binance spot instruments, four per shard
(crc32("binance_spot:<symbol>") mod 2), in the recent past, so every minute becomes a final
bar at once. The test shows each collector collects only its shard's instruments, each bar
shard builds and serves only its own (and refuses the others),
the gateway routes charts and live streams to the owner, and analytics covers both shards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
import websockets
from grpc import aio

from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig
from tickmesh.collector.simulator.config import Market
from tickmesh.collector.simulator.sources import random_walk
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_of
from tickmesh.v2 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    market_pb2,
    symbol_service_pb2,
    symbol_service_pb2_grpc,
)

from .gateway.processes import ADMIN, GatewayProcess, login, start_gateway
from .ingest_helpers import final_minute_trades, publish_until_acked
from .mesh_processes import ServiceProcess, bar_shard_processes, simulator_urls

SHARDS = 2
SYMBOLS = {
    0: ("BTCUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"),
    1: ("ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"),
}
ALL_SYMBOLS = [symbol for shard in SYMBOLS.values() for symbol in shard]
# Traded only while analytics is down, straight into their owner shards (simulator venue).
LATE_SYMBOLS = {0: "LATED", 1: "LATEA"}
TRADES_PER_SYMBOL = 400
TAKER_ORDERS_PER_SECOND = 1.0
SEED = 11
MINUTE_MS = 60_000
WITHIN_SECONDS = 30.0


@dataclass
class Mesh:
    """The running processes and what the test needs to reach them."""

    simulator: ExchangeSimulator
    bars: list[ServiceProcess]
    collectors: list[ServiceProcess]
    analytics: ServiceProcess
    gateway: GatewayProcess
    database_url: str


def _expected_trades(start_ms: int) -> dict[str, Counter[int]]:
    """Trades per symbol and minute (open time, ms) of the random walk the simulator replays."""
    walk = random_walk(
        ALL_SYMBOLS,
        Market.SPOT,
        seed=SEED,
        trades_per_second=TAKER_ORDERS_PER_SECOND,
        start_ms=start_ms,
        count=TRADES_PER_SYMBOL,
    )
    minutes: dict[str, Counter[int]] = {symbol: Counter() for symbol in ALL_SYMBOLS}
    for event in walk:
        assert event.trade is not None
        minutes[event.trade.symbol][event.trade.time_ms // MINUTE_MS * MINUTE_MS] += 1
    return minutes


@pytest.fixture
async def mesh(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Mesh, int]]:
    """The sharded mesh on one database and one Redis, with the simulator paused."""
    # Start well in the past so the walk's ~4 minutes are final as soon as they are in.
    start_ms = (int(time.time() * 1000) // MINUTE_MS - 10) * MINUTE_MS
    config = SimulatorConfig(
        symbols=ALL_SYMBOLS,
        trades_per_second=TAKER_ORDERS_PER_SECOND,
        random_walk_trades=TRADES_PER_SYMBOL,
        start_time_ms=start_ms,
        seed=SEED,
        speed=None,
        paused=True,
    )
    common = {
        "TICKMESH_DATABASE_URL": fresh_database_url,
        "TICKMESH_REDIS_URL": fresh_redis_url,
        "TICKMESH_DRAIN_SECONDS": "1",
    }
    async with ExchangeSimulator(config) as simulator:
        bars = bar_shard_processes(common, SHARDS)
        routed = common | {"TICKMESH_BARS_ADDRESSES": ",".join(b.address for b in bars)}
        collectors = [
            ServiceProcess(
                "collector",
                routed
                | {
                    "TICKMESH_COLLECTOR_SHARD_INDEX": str(index),
                    "TICKMESH_COLLECTOR_SHARD_COUNT": str(SHARDS),
                    "TICKMESH_COLLECTOR_REGISTRY_POLL_SECONDS": "0.3",
                    **simulator_urls(simulator),
                },
            )
            for index in range(SHARDS)
        ]
        analytics = ServiceProcess(
            "analytics", routed | {"TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20"}
        )
        started: list[ServiceProcess] = []
        gateway: GatewayProcess | None = None
        try:
            await asyncio.gather(*(b.start() for b in bars))
            started += bars
            await asyncio.gather(*(p.start() for p in [*collectors, analytics]))
            started += [*collectors, analytics]
            gateway = await start_gateway(
                fresh_database_url,
                fresh_redis_url,
                tmp_path / "gateway.log",
                TICKMESH_BARS_ADDRESSES=routed["TICKMESH_BARS_ADDRESSES"],
                TICKMESH_ANALYTICS_ADDRESS=analytics.address,
                TICKMESH_COLLECTOR_ADDRESS=collectors[0].address,
                TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS="5",
                TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE="100000",
            )
            mesh = Mesh(simulator, bars, collectors, analytics, gateway, fresh_database_url)
            yield mesh, start_ms
        finally:
            if gateway is not None:
                await gateway.stop()
            for process in reversed(started):
                await process.kill()


async def _register(collector: ServiceProcess) -> None:
    """Add every instrument through one collector's SymbolService (the registry is shared)."""
    async with aio.insecure_channel(collector.address) as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        for symbol in ALL_SYMBOLS:
            await stub.AddSymbol(
                symbol_service_pb2.AddSymbolRequest(
                    symbol=symbol, exchange=market_pb2.EXCHANGE_BINANCE_SPOT, asset_type="crypto"
                )
            )


async def _subscribed_streams(simulator: ExchangeSimulator) -> list[set[str]]:
    """Wait until every symbol's trade stream is subscribed; each connection's streams."""
    wanted = {f"{symbol.lower()}@trade" for symbol in ALL_SYMBOLS}
    async with asyncio.timeout(WITHIN_SECONDS):
        while True:
            streams = [set(c.subscriptions) for c in simulator.hub.connections]
            if set().union(*streams) >= wanted:
                return [s for s in streams if s]
            await asyncio.sleep(0.05)


def _spot(symbol: str) -> InstrumentId:
    return InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, symbol)


def _late(symbol: str) -> InstrumentId:
    return InstrumentId(market_pb2.EXCHANGE_SIMULATOR, symbol)


async def _get_bars(address: str, symbol: str) -> list[market_pb2.Bar]:
    async with aio.insecure_channel(address) as channel:
        reply = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=_spot(symbol).to_proto(), timeframe=market_pb2.TIMEFRAME_1M, limit=5000
            ),
            timeout=10,
        )
    return list(reply.bars)


async def _complete_bars(address: str, symbol: str, trades: int) -> list[market_pb2.Bar]:
    """The owner's final 1m bars of `symbol` once they hold all of its trades."""
    deadline = time.monotonic() + WITHIN_SECONDS
    bars = await _get_bars(address, symbol)
    while sum(bar.trade_count for bar in bars) < trades:
        assert time.monotonic() < deadline, f"{symbol}: {sum(b.trade_count for b in bars)} trades"
        await asyncio.sleep(0.2)
        bars = await _get_bars(address, symbol)
    return bars


async def _chart(client: httpx.AsyncClient, instrument: InstrumentId) -> dict[str, Any]:
    reply = await client.get(
        f"/api/v1/charts/{instrument}", params={"timeframe": "1m", "limit": "5000"}
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def _next_final(ws: websockets.ClientConnection, symbol: str) -> dict[str, Any]:
    """The first final 1m bar pushed on a /ws/{instrument} connection."""
    async with asyncio.timeout(WITHIN_SECONDS):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] != "bars" or message["timeframe"] != "1m":
                continue
            for bar in message["bars"]:
                if bar["final"]:
                    assert bar["instrument"] == str(_spot(symbol))
                    return dict(bar)


async def _wait_subscribers(bars: list[ServiceProcess], wanted: int) -> None:
    """Wait until every bar shard has `wanted` open Subscribe streams."""
    deadline = time.monotonic() + WITHIN_SECONDS
    while True:
        counts = [await shard.metric("tickmesh_bars_subscribers") for shard in bars]
        if counts == [wanted] * len(bars):
            return
        assert time.monotonic() < deadline, f"subscribers per shard: {counts}"
        await asyncio.sleep(0.05)


def _late_trades(symbol: str, minute_ms: int) -> list[market_pb2.TradeBatch]:
    """Three trades in one minute and one in the next, so the first minute's bar is final."""
    trades = final_minute_trades(symbol, minute_ms)
    return [market_pb2.TradeBatch(stream_id=f"late-{symbol}", sequence=1, trades=[trades])]


async def _resume_points(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT consumer, last_change_id FROM analytics_consumer_state"
        )
    finally:
        await connection.close()
    return {row["consumer"]: row["last_change_id"] for row in rows}


async def _wait_indicators(
    client: httpx.AsyncClient,
    minutes: dict[InstrumentId, set[int]],
    within: float = WITHIN_SECONDS,
) -> None:
    """Wait until the gateway's chart of each instrument has indicators for each minute (ms)."""
    deadline = time.monotonic() + within
    missing = set(minutes)
    while missing:
        for symbol in sorted(missing):
            chart = await _chart(client, symbol)
            computed = {row["time"] * 1000 for row in chart["indicators"] or []}
            if computed >= minutes[symbol]:
                missing.discard(symbol)
        assert time.monotonic() < deadline, f"no indicators yet for {sorted(missing)}"
        await asyncio.sleep(0.2)


async def test_sharded_mesh_serves_every_instrument_from_exactly_one_shard(
    mesh: tuple[Mesh, int],
) -> None:
    running, start_ms = mesh
    expected = _expected_trades(start_ms)
    assert {
        shard: [shard_of(_spot(s), SHARDS) for s in symbols] for shard, symbols in SYMBOLS.items()
    } == {shard: [shard] * len(symbols) for shard, symbols in SYMBOLS.items()}
    bar_addresses = [process.address for process in running.bars]

    await _register(running.collectors[0])
    # Collector shard i subscribes to exactly the symbols of shard i.
    streams = await _subscribed_streams(running.simulator)
    assert sorted(sorted(s) for s in streams) == sorted(
        sorted(f"{symbol.lower()}@trade" for symbol in symbols) for symbols in SYMBOLS.values()
    )

    async with httpx.AsyncClient(base_url=running.gateway.base_url, timeout=10) as client:
        client.headers.update(await login(client, *ADMIN))
        token = client.headers["Authorization"].removeprefix("Bearer ")
        ws_base = running.gateway.base_url.replace("http://", "ws://")
        watched = {shard: symbols[0] for shard, symbols in SYMBOLS.items()}
        sockets = {
            symbol: await websockets.connect(f"{ws_base}/ws/{_spot(symbol)}?token={token}")
            for symbol in watched.values()
        }
        try:
            for ws in sockets.values():
                await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
            # Each bar shard streams to analytics and to the gateway for its watched symbol
            # before any trade flows, so no final bar can pass before the stream is open.
            await _wait_subscribers(running.bars, 2)
            running.simulator.resume()
            async with asyncio.timeout(WITHIN_SECONDS):
                await running.simulator.wait_replay_done()

            # The gateway's live stream of each watched symbol comes from its owner shard.
            for symbol, ws in sockets.items():
                bar = await _next_final(ws, symbol)
                assert bar["time"] * 1000 in expected[symbol]
        finally:
            for ws in sockets.values():
                await ws.close()

        for shard, symbols in SYMBOLS.items():
            owner, other = bar_addresses[shard], bar_addresses[1 - shard]
            for symbol in symbols:
                bars = await _complete_bars(owner, symbol, TRADES_PER_SYMBOL)
                traded = {
                    bar.open_time_ns // 1_000_000: bar.trade_count
                    for bar in bars
                    if bar.trade_count
                }
                assert traded == dict(expected[symbol]), symbol
                # The other shard never built it and refuses to serve it.
                with pytest.raises(aio.AioRpcError) as refused:
                    await _get_bars(other, symbol)
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert f"belongs to bar shard {shard} of 2" in (refused.value.details() or "")
                # The gateway serves the owner's bars.
                chart = await _chart(client, _spot(symbol))
                assert [b["time"] for b in chart["bars"]] == [
                    bar.open_time_ns // 1_000_000_000 for bar in bars
                ]
                assert sum(b["trade_count"] for b in chart["bars"]) == TRADES_PER_SYMBOL

        # Each bar shard accepted exactly its symbols' trades: nothing crossed over.
        for shard, process in enumerate(running.bars):
            accepted = await process.metric("tickmesh_bars_trades_total", 'outcome="accepted"')
            assert accepted == TRADES_PER_SYMBOL * len(SYMBOLS[shard])

        # Analytics consumed both shards: indicators for every symbol, through the gateway.
        await _wait_indicators(client, {_spot(s): set(expected[s]) for s in ALL_SYMBOLS})

        health = (await client.get("/api/v1/health")).json()["components"]
        assert health["bars-0"]["status"] == health["bars-1"]["status"] == "serving"

        # One resume point per bar shard's stream.
        points = await _resume_points(running.database_url)
        assert sorted(points) == ["analytics:bars-0-of-2", "analytics:bars-1-of-2"]
        assert all(point > 0 for point in points.values())

        # Analytics down, both shards get new bars; restarted, it resumes each shard from its
        # own point: the new bars get their indicators, the old ones are not consumed again.
        await running.analytics.kill()
        connection = await asyncpg.connect(running.database_url)
        try:
            stored_bars = await connection.fetchval("SELECT count(*) FROM candles")
        finally:
            await connection.close()
        late_minute_ms = (int(time.time() * 1000) // MINUTE_MS - 3) * MINUTE_MS
        for shard, symbol in LATE_SYMBOLS.items():
            assert shard_of(_late(symbol), SHARDS) == shard
            await publish_until_acked(bar_addresses[shard], _late_trades(symbol, late_minute_ms))
        await running.analytics.start()
        await _wait_indicators(
            client, {_late(symbol): {late_minute_ms} for symbol in LATE_SYMBOLS.values()}
        )
        consumed = await running.analytics.metric("tickmesh_analytics_bars_consumed_total")
        assert 0 < consumed < stored_bars
        after = await _resume_points(running.database_url)
        assert all(after[name] > points[name] for name in points), (points, after)
