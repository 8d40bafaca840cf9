"""A bar that became final while the only gateway was dead still fires its alert, once.

A real bar service builds 1m bars from published trades; a real gateway judges a
price-above alert on them and is SIGKILLed. While it is down the bar that crosses the
threshold becomes final. The restarted gateway judges the bars after the mark the dead one
left in Redis before the live bar, so the alert fires exactly once, for the right minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tickmesh.v2 import market_pb2

from ..ingest_helpers import publish
from ..mesh_processes import ServiceProcess
from .processes import ADMIN, GatewayProcess, login, start_gateway

NS_PER_S = 1_000_000_000
MINUTE_NS = 60 * NS_PER_S
T0 = int(datetime(2024, 5, 1, tzinfo=UTC).timestamp()) * NS_PER_S
SYMBOL = "CATCHUSDT"
INSTRUMENT = f"binance_spot:{SYMBOL}"


def _minutes(stream: str, sequence: int, closes: dict[int, float]) -> market_pb2.TradeBatch:
    """Two trades per minute (at +5 s and +30 s), the second at the minute's close."""
    ids, prices, times = [], [], []
    for minute, close in sorted(closes.items()):
        for offset, price in ((5, 100.0), (30, close)):
            ids.append(minute * 2 + (offset == 30) + 1)
            prices.append(round(price * 10))  # mantissas of scale 1
            times.append(T0 + minute * MINUTE_NS + offset * NS_PER_S)
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol=SYMBOL,
        trade_ids=ids,
        prices=prices,
        quantities=[1] * len(ids),
        event_time_ns=times,
        price_scale=1,
        quantity_scale=0,
    )
    return market_pb2.TradeBatch(stream_id=stream, sequence=sequence, trades=[run])


async def _wait_for(
    condition: str, check: Callable[[], Awaitable[bool]], within_s: float = 30.0
) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {within_s}s: {condition}"
        await asyncio.sleep(0.2)


async def test_alert_on_a_bar_final_while_the_gateway_was_dead_fires_once(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", common | {"TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    await bars.start()
    settings = {
        "TICKMESH_BARS_ADDRESS": bars.address,
        "TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS": "5",
        "TICKMESH_GATEWAY_ALERT_REFRESH_SECONDS": "0.2",
    }
    gateway: GatewayProcess = await start_gateway(
        fresh_database_url, fresh_redis_url, tmp_path / "a.log", **settings
    )
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            admin = await login(client, *ADMIN)
            created = await client.post(
                "/api/v1/alerts",
                json={
                    "instrument": INSTRUMENT,
                    "timeframe": "1m",
                    "condition": "price_above",
                    "threshold": 150.0,
                    "channel": "websocket",
                    "cooldown": 0,
                },
                headers=admin,
            )
            assert created.status_code == 201, created.text
            alert_id = created.json()["id"]
            await asyncio.sleep(1.0)  # the engine re-reads the alerts and follows the symbol

            # Minutes 0..2 close below the threshold; a trade of minute 3 makes them final.
            await publish(bars.address, [_minutes("catch-up", 1, {0: 100, 1: 101, 2: 102})])
            await publish(bars.address, [_minutes("catch-up", 2, {3: 103})])
            await asyncio.sleep(2.0)  # the live gateway judges minutes 0..2
        await gateway.kill()

        # While no gateway runs: minute 3 closes at 103, minute 4 at 200 (fires), 5 at 104.
        await publish(bars.address, [_minutes("catch-up", 3, {4: 200, 5: 104, 6: 105})])
        gateway = await start_gateway(
            fresh_database_url, fresh_redis_url, tmp_path / "b.log", **settings
        )
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            admin = await login(client, *ADMIN)
            await asyncio.sleep(1.0)
            # The first live final bar after the restart: minute 6 (a trade of minute 7).
            await publish(bars.address, [_minutes("catch-up", 4, {7: 106})])

            async def fired() -> bool:
                events = await client.get(f"/api/v1/alerts/{alert_id}/events", headers=admin)
                return bool(events.json())

            await _wait_for("the missed crossing fires", fired)
            await asyncio.sleep(1.0)  # and nothing else does
            events = (await client.get(f"/api/v1/alerts/{alert_id}/events", headers=admin)).json()
            metrics = (await client.get("/metrics")).text
        fired_at = [datetime.fromisoformat(e["bar_time"]) for e in events]
        assert fired_at == [datetime.fromtimestamp((T0 + 4 * MINUTE_NS) // NS_PER_S, UTC)]
        assert "tickmesh_alert_bars_caught_up_total 3.0" in metrics
    finally:
        await gateway.kill()
        await bars.kill()
