"""A collector process SIGKILLed mid-replay resumes after its last durable trade ids.

The simulator replays a USD-M BTCUSDT and a spot ETHUSDT capture at 60x; a real
`python -m tickmesh.collector` feeds a real bar service and is killed three times at random
moments, losing whatever it held in memory. Each restart resumes every symbol from the
durable mark it kept in Redis and backfills the rest over REST: the final 1m bars must equal
Binance's klines (USD-M) and the capture's own minutes (spot): one lost or doubled trade
changes a trade count.
"""

from __future__ import annotations

import asyncio
import random
import time

import redis.asyncio as redis
from grpc import aio

from tickmesh.collector.resume_points import resume_key
from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig, SourceSpec
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

from ..ingest_helpers import fixtures_root
from ..mesh_processes import ServiceProcess, simulator_urls
from .test_collector_delivery import SPOT_CAPTURE, USDM_CAPTURE, _wait_bars

KILLS = 3


async def _register(collector: ServiceProcess) -> None:
    async with aio.insecure_channel(collector.address) as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        for symbol, exchange in (
            ("BTCUSDT", market_pb2.EXCHANGE_BINANCE_USDM),
            ("ETHUSDT", market_pb2.EXCHANGE_BINANCE_SPOT),
        ):
            await stub.AddSymbol(
                symbol_service_pb2.AddSymbolRequest(
                    symbol=symbol, exchange=exchange, asset_type="crypto"
                )
            )


async def test_collector_killed_three_times_mid_replay_loses_and_doubles_nothing(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    fixtures = fixtures_root()
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", {**common, "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    config = SimulatorConfig(
        sources=[SourceSpec(fixtures / USDM_CAPTURE), SourceSpec(fixtures / SPOT_CAPTURE)],
        speed=60.0,
        paused=True,
    )
    client = redis.Redis.from_url(fresh_redis_url)
    async with ExchangeSimulator(config) as sim:
        collector = ServiceProcess(
            "collector",
            {
                **common,
                "TICKMESH_BARS_ADDRESS": bars.address,
                **simulator_urls(sim),
                "TICKMESH_COLLECTOR_REGISTRY_POLL_SECONDS": "0.2",
                "TICKMESH_COLLECTOR_BACKFILL_GRACE_MS": "200",
            },
        )
        try:
            await bars.start()
            await collector.start()
            await _register(collector)
            async with asyncio.timeout(30):
                while sum(len(c.subscriptions) for c in sim.hub.connections) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            sim.resume()
            chooser = random.Random(11)
            begun = time.monotonic()
            for moment in sorted(chooser.uniform(1.0, 8.0) for _ in range(KILLS)):
                await asyncio.sleep(max(0.0, begun + moment - time.monotonic()))
                await collector.kill()
                await collector.start()
            async with asyncio.timeout(60):
                await sim.wait_replay_done()
            # The bars are checked against outside truth; the marks show the resume path ran.
            await _wait_bars(bars.address)
            marks = await client.hgetall(resume_key("collector-0-of-1"))
            assert len(marks) == 2
        finally:
            await client.aclose()
            await collector.kill()
            await bars.kill()
