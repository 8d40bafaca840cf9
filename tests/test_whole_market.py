"""The whole-market scenario, short: no trade lost and no bar doubled (timings are the bench's).

The simulator plays a 200-instrument whole market (spot and USD-M, Zipf-skewed, with a burst
each minute) through a real collector, bar service, analytics and gateway. Its exchange
times start minutes in the past and it replays as fast as the collector reads, so every
minute is final as soon as it is in: the test costs seconds of replay, not minutes of
waiting. Every stored 1m bar must count exactly the trades the simulator released in its
minute, and no bar may be stored twice.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig, WholeMarket

from .gateway.processes import ADMIN, login
from .whole_market_mesh import (
    MINUTE_MS,
    build_market_mesh,
    doubled_bars,
    market_instruments,
    register_market,
    sent_trades_per_minute,
    stored_trades_per_minute,
    wait_market_subscribed,
)

# 200/s with a 5 s burst at 1,000/s each minute: 16,000 trades a minute, 30,000 in all.
MARKET = WholeMarket(
    200, rate=200.0, burst_rate=1_000.0, burst_s=5.0, burst_every_s=60.0, trades=30_000
)
WITHIN_SECONDS = 60.0


async def test_whole_market_loses_no_trade_and_doubles_no_bar(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    # Two minutes of exchange time, ending a minute before now: final once they are in.
    start_ms = (int(time.time() * 1000) // MINUTE_MS - 3) * MINUTE_MS
    config = SimulatorConfig(
        whole_market=MARKET, start_time_ms=start_ms, speed=None, paused=True, seed=5
    )
    common = {
        "TICKMESH_DATABASE_URL": fresh_database_url,
        "TICKMESH_REDIS_URL": fresh_redis_url,
        "TICKMESH_DRAIN_SECONDS": "0.5",
    }
    async with ExchangeSimulator(config) as sim:
        mesh = build_market_mesh(common, sim, clients=10)
        try:
            await asyncio.gather(*(service.start(60.0) for service in mesh.services.values()))
            instruments = market_instruments(sim)
            await register_market(mesh, instruments)
            await wait_market_subscribed(sim, instruments)
            sim.resume()
            async with asyncio.timeout(WITHIN_SECONDS):
                await sim.wait_replay_done()
            sent = sent_trades_per_minute(sim)
            assert sum(sent.values()) == MARKET.trades
            stored: dict[tuple[str, str, int], int] = {}
            async with asyncio.timeout(WITHIN_SECONDS):
                while stored != sent:
                    await asyncio.sleep(0.5)
                    stored = await stored_trades_per_minute(fresh_database_url)
            assert await doubled_bars(fresh_database_url) == []
            # The gateway serves the busiest instrument's chart from what was stored.
            async with httpx.AsyncClient(base_url=mesh.gateway.base_url, timeout=10) as client:
                headers = await login(client, *ADMIN)
                chart = await client.get(
                    f"/api/v1/charts/{instruments[0]}", params={"limit": 10}, headers=headers
                )
                chart.raise_for_status()
                assert chart.json()["bars"]
        finally:
            for service in mesh.services.values():
                await service.kill()
