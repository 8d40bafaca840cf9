"""`python -m tickmesh.collector` as deployed: follows the registry, reports health, feeds bars."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
from grpc import aio

from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig
from tickmesh.core.cache import SYSTEM_HEALTH_KEY
from tickmesh.v1 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

from ..mesh_processes import ServiceProcess, simulator_urls


@pytest.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    """A random walk of two spot symbols, 200 trades/s each."""
    config = SimulatorConfig(symbols=["BTCUSDT", "ETHUSDT"], trades_per_second=200.0, seed=3)
    async with ExchangeSimulator(config) as sim:
        yield sim


async def test_collector_process_follows_registry_reports_health_and_feeds_bars(
    simulator: ExchangeSimulator, fresh_database_url: str, fresh_redis_url: str
) -> None:
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", {**common, "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    await bars.start()
    collector = ServiceProcess(
        "collector",
        {
            **common,
            "TICKMESH_BARS_ADDRESS": bars.address,
            **simulator_urls(simulator),
            "TICKMESH_COLLECTOR_HEALTH_INTERVAL_SECONDS": "0.5",
        },
    )
    await collector.start()
    client = redis.Redis.from_url(fresh_redis_url)
    try:
        async with aio.insecure_channel(collector.address) as channel:
            stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
            await stub.AddSymbol(
                symbol_service_pb2.AddSymbolRequest(
                    symbol="BTCUSDT", exchange=market_pb2.EXCHANGE_BINANCE_SPOT, asset_type="crypto"
                )
            )
        accepted = 0.0
        for _ in range(150):  # the registry is re-read every few seconds
            accepted = await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"')
            if accepted >= 200:
                break
            await asyncio.sleep(0.1)
        assert accepted >= 200
        health = await client.hgetall(SYSTEM_HEALTH_KEY)
        spot = json.loads(health[b"collector:binance_spot"])
        assert spot["updated_at"] > 0
        assert b"collector:ingest" in health
        # Only the registered symbol is collected: ETHUSDT trades never reach the bar service.
        connection = await asyncpg.connect(fresh_database_url)
        try:
            rows = await connection.fetch("SELECT symbol FROM bar_engine_state")
        finally:
            await connection.close()
        assert {row["symbol"] for row in rows} == {"BTCUSDT"}
    finally:
        await client.aclose()
        await collector.kill()
        await bars.kill()
