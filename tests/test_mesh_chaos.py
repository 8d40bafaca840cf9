"""`make chaos` in short: every service SIGKILLed during a replay through the whole mesh.

The simulator replays a USD-M capture at 8x through a real collector, bar service,
analytics service and gateway; each is killed twice at random moments (their schedules
overlap). Judged against outside truth: the final 1m bars of the capture's full minutes
equal Binance's own klines; every final bar has its indicators; the price alerts fired
exactly on the minutes whose kline close is beyond their level, once each. (The PostgreSQL
outage of `make chaos` is covered by test_bar_postgres_outage on its own server.)
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig, SourceSpec
from tickmesh.v2 import market_pb2

from .chaos_mesh import (
    INSTRUMENT,
    alert_firings,
    analytics_rows,
    build_mesh,
    register_instrument_and_alerts,
    wait_subscribed,
)
from .collector.test_collector_delivery import FUTURES_CASES, _final_bars, _klines, _mismatches
from .ingest_helpers import fixtures_root
from .mesh_processes import ServiceProcess
from .test_bar_chaos import settled_bars
from .tls_helpers import TestPki

SPEED = 8.0
REPLAY_SECONDS = 8 * 60 / SPEED
KILLS_PER_SERVICE = 2


async def _kill_on_schedule(service: ServiceProcess, moments: list[float], begun: float) -> None:
    for at in moments:
        await asyncio.sleep(max(0.0, begun + at - time.monotonic()))
        await service.kill()
        await service.start(120.0)


async def test_every_service_killed_during_a_replay_loses_and_doubles_nothing(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    capture, klines_file, minutes = FUTURES_CASES["2023-04-04"]
    fixtures = fixtures_root()
    common = {
        "TICKMESH_DATABASE_URL": fresh_database_url,
        "TICKMESH_REDIS_URL": fresh_redis_url,
        "TICKMESH_DRAIN_SECONDS": "0.5",
    }
    config = SimulatorConfig(sources=[SourceSpec(fixtures / capture)], speed=SPEED, paused=True)
    async with ExchangeSimulator(config) as sim:
        # With mutual TLS, as deployed: reconnects after each kill go through the handshake.
        mesh = build_mesh(common, sim, TestPki(tmp_path))
        reader = mesh.bars.credentials("reader")
        try:
            for service in mesh.services.values():
                await service.start()
            await register_instrument_and_alerts(mesh)
            await wait_subscribed(sim)
            await asyncio.sleep(1.0)  # the gateway's alert engine follows the instrument
            sim.resume()
            chooser = random.Random(3)
            begun = time.monotonic()
            await asyncio.gather(
                *(
                    _kill_on_schedule(
                        service,
                        sorted(
                            chooser.uniform(2.0, 0.7 * REPLAY_SECONDS)
                            for _ in range(KILLS_PER_SERVICE)
                        ),
                        begun,
                    )
                    for service in mesh.services.values()
                )
            )
            async with asyncio.timeout(REPLAY_SECONDS + 120):
                await sim.wait_replay_done()
            expected = _klines(fixtures / klines_file)
            wrong = ["not read yet"]
            for _ in range(150):  # revisions from the collector's backfill settle
                built = await _final_bars(mesh.bars.address, str(INSTRUMENT), minutes, reader)
                wrong = _mismatches(built, expected, minutes)
                if not wrong:
                    break
                await asyncio.sleep(0.2)
            assert wrong == []

            final = await settled_bars(mesh.bars.address, reader)
            deadline = time.monotonic() + 60
            indicator_rows = 0
            while time.monotonic() < deadline:
                rows = await analytics_rows(fresh_database_url)
                indicator_rows = sum(1 for table, _, _ in rows if table == "indicators")
                if indicator_rows >= len(final):
                    break
                await asyncio.sleep(0.5)
            assert indicator_rows == len(final)

            await asyncio.sleep(3.0)  # the last final bars reach the alert engine
            firings = await alert_firings(fresh_database_url)
        finally:
            for service in reversed(mesh.services.values()):
                await service.kill()
    assert all(count == 1 for count in firings.values()), firings
    judged = [minute for minute in minutes if not built[minute].revision]
    assert len(judged) >= 3, "too few unrevised minutes to judge the alerts on"
    for condition, level in (("price_above", 28150.0), ("price_below", 28145.0)):
        fired = {key[3] for key in firings if key[:3] == (condition, level, "1m")}
        # Alerts judge a bar's first final version: a revised bar's firing may predate its
        # late trades, so only unrevised minutes are held to the klines.
        for minute in judged:
            close = expected[minute].close
            beyond = close > level if condition == "price_above" else close < level
            stamp = datetime.fromtimestamp(minute // 1_000_000_000, UTC).isoformat()
            assert (stamp in fired) == beyond, (condition, stamp, close)
    assert market_pb2.TIMEFRAME_1M in {timeframe for timeframe, _ in final}
