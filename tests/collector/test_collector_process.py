"""`python -m tickmesh.collector` as deployed: follows the registry, reports health, feeds bars."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
from grpc import aio

from tickmesh.collector.simulator import ExchangeSimulator, Market, SimulatorConfig
from tickmesh.core.cache import SYSTEM_HEALTH_KEY
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

from ..mesh_processes import ServiceProcess, simulator_urls

HEALTH_STATES = {"up", "connecting", "unreachable", "degraded", "idle"}


@pytest.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    """A random walk of BTCUSDT and ETHUSDT on spot and on USD-M, 200 trades/s each."""
    config = SimulatorConfig(
        symbols=["BTCUSDT", "ETHUSDT"],
        trades_per_second=200.0,
        seed=3,
        random_walk_markets=(Market.SPOT, Market.USDM),
    )
    async with ExchangeSimulator(config) as sim:
        yield sim


async def _health(client: redis.Redis, source: str) -> dict[str, object]:
    raw = await client.hget(SYSTEM_HEALTH_KEY, f"collector:{source}")
    return {} if raw is None else dict(json.loads(raw))


async def test_collector_process_watchlist_side_by_side_health_and_increments(
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
            "TICKMESH_COLLECTOR_REGISTRY_POLL_SECONDS": "0.5",
            # The empty registry gets this watchlist: BTCUSDT on both venues, nothing else.
            "TICKMESH_COLLECTOR_DEFAULT_WATCHLIST": "binance_spot:BTCUSDT,binance_usdm:BTCUSDT",
        },
    )
    await collector.start()
    client = redis.Redis.from_url(fresh_redis_url)
    try:
        connection = await asyncpg.connect(fresh_database_url)
        try:
            venues: set[tuple[str, str]] = set()
            for _ in range(150):
                rows = await connection.fetch("SELECT exchange, symbol FROM bar_engine_state")
                venues = {(row["exchange"], row["symbol"]) for row in rows}
                if len(venues) == 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            await connection.close()
        # The same symbol on two venues is collected side by side; ETHUSDT is not registered.
        assert venues == {("binance_spot", "BTCUSDT"), ("binance_usdm", "BTCUSDT")}
        async with aio.insecure_channel(collector.address) as channel:
            stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
            listed = (await stub.ListSymbols(symbol_service_pb2.ListSymbolsRequest())).symbols
        assert [(s.exchange, s.symbol) for s in listed] == [
            (market_pb2.EXCHANGE_BINANCE_SPOT, "BTCUSDT"),
            (market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT"),
        ]
        # Filled from the simulator's exchangeInfo (the random walk's cents and 0.001 lots).
        assert {(s.price_increment, s.quantity_increment) for s in listed} == {("0.01", "0.001")}
        for source in ("binance_spot", "binance_usdm"):
            health = await _health(client, source)
            for _ in range(50):  # written every 0.5 s: the first may predate the connection
                if health.get("state") == "up":
                    break
                await asyncio.sleep(0.1)
                health = await _health(client, source)
            assert health["state"] == "up"
            assert health["error"] is None
        ingest = await _health(client, "ingest")
        assert ingest["state"] in HEALTH_STATES
        assert (await _health(client, "yahoo"))["state"] == "idle"
    finally:
        await client.aclose()
        await collector.kill()
        await bars.kill()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_collector_unreachable_venue_says_so_in_log_and_health(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    nowhere = f"127.0.0.1:{_closed_port()}"
    collector = ServiceProcess(
        "collector",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_ADDRESS": nowhere,
            "TICKMESH_COLLECTOR_BINANCE_SPOT_STREAM_URL": f"ws://{nowhere}",
            "TICKMESH_COLLECTOR_BINANCE_SPOT_API_URL": f"http://{nowhere}/api",
            "TICKMESH_COLLECTOR_BINANCE_USDM_STREAM_URL": f"ws://{nowhere}/usdm",
            "TICKMESH_COLLECTOR_BINANCE_USDM_API_URL": f"http://{nowhere}/fapi",
            "TICKMESH_COLLECTOR_HEALTH_INTERVAL_SECONDS": "0.3",
            "TICKMESH_COLLECTOR_DEFAULT_WATCHLIST": "binance_usdm:BTCUSDT",
        },
    )
    await collector.start()
    client = redis.Redis.from_url(fresh_redis_url)
    try:
        health: dict[str, object] = {}
        for _ in range(100):
            health = await _health(client, "binance_usdm")
            if health.get("state") == "unreachable":
                break
            await asyncio.sleep(0.1)
        assert health["state"] == "unreachable"
        assert isinstance(health["error"], str)
        assert health["error"]
        assert (await _health(client, "binance_spot"))["state"] == "idle"
        warnings = [
            json.loads(line)
            for line in collector.log_path.read_text(errors="replace").splitlines()
            if line.startswith("{") and "cannot be reached" in line
        ]
        assert warnings
        assert warnings[0]["level"] == "WARNING"
        assert "binance_usdm" in warnings[0]["message"]
        assert "run `make demo` for the offline simulator" in warnings[0]["message"]
    finally:
        await client.aclose()
        await collector.kill()
