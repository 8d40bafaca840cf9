"""A firing judged on one gateway replica reaches the user's WebSocket on another.

Replica A runs the alert engine; replica B has it switched off and holds the user's
WebSocket. A's firing goes through Redis pub/sub to B's connection, once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from ..ingest_helpers import publish
from ..mesh_processes import ServiceProcess
from .processes import ADMIN, login, register, start_collector, start_gateway
from .test_alert_catch_up import INSTRUMENT, _minutes


async def test_firing_on_one_replica_reaches_a_websocket_on_another(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", common | {"TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    await bars.start()
    # The registry behind both gateways; its Binance sources point nowhere (no live venue).
    collector, collector_address = await start_collector(
        fresh_database_url,
        fresh_redis_url,
        tmp_path / "collector.log",
        TICKMESH_COLLECTOR_BINANCE_SPOT_STREAM_URL="ws://127.0.0.1:1",
        TICKMESH_COLLECTOR_BINANCE_SPOT_API_URL="http://127.0.0.1:1/api",
    )
    settings = {
        "TICKMESH_COLLECTOR_ADDRESS": collector_address,
        "TICKMESH_BARS_ADDRESS": bars.address,
        "TICKMESH_GATEWAY_ALERT_REFRESH_SECONDS": "0.2",
    }
    judging = await start_gateway(
        fresh_database_url, fresh_redis_url, tmp_path / "a.log", **settings
    )
    serving = await start_gateway(
        fresh_database_url,
        fresh_redis_url,
        tmp_path / "b.log",
        **settings,
        TICKMESH_GATEWAY_ALERTS_ENABLED="false",
    )
    try:
        async with httpx.AsyncClient(base_url=judging.base_url) as client:
            admin = await login(client, *ADMIN)
            created = await client.post(
                "/api/v1/alerts",
                json={"instrument": INSTRUMENT, "condition": "price_above", "threshold": 150.0},
                headers=admin,
            )
            assert created.status_code == 201, created.text
        token = admin["Authorization"].removeprefix("Bearer ")
        await register(judging.base_url, admin, INSTRUMENT)
        url = serving.base_url.replace("http://", "ws://") + f"/ws/{INSTRUMENT}?token={token}"
        async with websockets.connect(url) as ws:
            await asyncio.sleep(1.0)  # A's engine follows the symbol
            await publish(bars.address, [_minutes("broadcast", 1, {0: 100, 1: 200, 2: 101})])
            alerts: list[dict[str, Any]] = []
            first_at = 0.0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if alerts and time.monotonic() > first_at + 2.0:
                    break  # two more seconds: a second copy would have arrived by now
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                except TimeoutError:
                    continue
                if message["type"] == "alert":
                    alerts.append(message)
                    first_at = time.monotonic()
            assert len(alerts) == 1
            assert alerts[0]["alert_id"] == created.json()["id"]
            assert alerts[0]["value"] == 200.0
    finally:
        await serving.stop()
        await judging.stop()
        await collector.stop()
        await bars.kill()
