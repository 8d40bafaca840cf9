"""The gateway as a process: production secrets, limits shared by replicas, symbols via the collector."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from .processes import ADMIN, login, start_collector, start_gateway


def test_production_without_secret_exits_2_naming_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_GATEWAY_JWT")}
    result = subprocess.run(
        [sys.executable, "-m", "tickmesh.gateway"],
        env=env | {"TICKMESH_ENVIRONMENT": "production"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "TICKMESH_GATEWAY_JWT_SECRET" in lines[0]
    assert "production" in lines[0]


def test_production_short_secret_exits_2_without_echoing_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickmesh.gateway"],
        env=os.environ
        | {"TICKMESH_ENVIRONMENT": "production", "TICKMESH_GATEWAY_JWT_SECRET": "hunter2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "TICKMESH_GATEWAY_JWT_SECRET: must be at least 32 characters" in result.stderr
    assert "hunter2" not in result.stderr


async def test_rate_limit_across_two_gateways_admits_exactly_the_limit(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    # 10 per minute refills one token every 6 s: far slower than the burst below.
    limit = 10
    env = {"TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE": str(limit)}
    gateways = await asyncio.gather(
        start_gateway(database_url, redis_url, tmp_path / "a.log", **env),
        start_gateway(database_url, redis_url, tmp_path / "b.log", **env),
    )
    try:
        clients = [httpx.AsyncClient(base_url=g.base_url) for g in gateways]
        headers = {"X-Test": "burst"}
        # Both bucket the same client (127.0.0.1); half the burst goes to each replica.
        replies = await asyncio.gather(
            *(clients[i % 2].get("/api/v1/alerts", headers=headers) for i in range(3 * limit))
        )
        statuses = [reply.status_code for reply in replies]
        assert statuses.count(429) == 2 * limit
        assert statuses.count(401) == limit
        refused = next(reply for reply in replies if reply.status_code == 429)
        assert int(refused.headers["retry-after"]) >= 1
        for client in clients:
            await client.aclose()
    finally:
        for gateway in gateways:
            assert await gateway.stop() == 0


async def test_admin_manages_symbols_through_real_collector(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    collector, address = await start_collector(database_url, redis_url, tmp_path / "c.log")
    gateway = await start_gateway(
        database_url, redis_url, tmp_path / "g.log", TICKMESH_COLLECTOR_ADDRESS=address
    )
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            admin = await login(client, *ADMIN)
            # The same symbol on spot and USD-M: two instruments, side by side.
            for venue in ("binance_spot", "binance_usdm"):
                added = await client.post(
                    "/api/v1/symbols",
                    json={"exchange": venue, "symbol": "ETHUSDT", "asset_type": "crypto"},
                    headers=admin,
                )
                assert added.status_code == 201, added.text
                assert added.json()["instrument"] == f"{venue}:ETHUSDT"
                assert added.json()["active"] is True
            listed = await client.get("/api/v1/symbols", headers=admin)
            active = {s["instrument"]: s for s in listed.json()}
            assert {"binance_spot:ETHUSDT", "binance_usdm:ETHUSDT"} <= set(active)
            assert active["binance_usdm:ETHUSDT"]["exchange"] == "binance_usdm"
            assert active["binance_usdm:ETHUSDT"]["symbol"] == "ETHUSDT"
            gone = await client.delete("/api/v1/symbols/binance_spot:ETHUSDT", headers=admin)
            assert (gone.json()["instrument"], gone.json()["active"]) == (
                "binance_spot:ETHUSDT",
                False,
            )
            listed = await client.get("/api/v1/symbols", headers=admin)
            still = [s["instrument"] for s in listed.json()]
            assert "binance_usdm:ETHUSDT" in still
            assert "binance_spot:ETHUSDT" not in still
            missing = await client.delete("/api/v1/symbols/binance_spot:NOSUCH", headers=admin)
            assert missing.status_code == 404
            malformed = await client.delete("/api/v1/symbols/ETHUSDT", headers=admin)
            assert malformed.status_code == 422
            assert "path.instrument" in malformed.json()["detail"]
            health = (await client.get("/api/v1/health")).json()
            assert health["components"]["collector"]["status"] == "serving"
    finally:
        assert await gateway.stop() == 0
        await collector.stop()


async def test_health_says_a_venue_cannot_be_reached(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    nowhere = "127.0.0.1:1"  # nothing listens: what a machine without internet sees
    collector, address = await start_collector(
        fresh_database_url,
        fresh_redis_url,
        tmp_path / "c.log",
        TICKMESH_COLLECTOR_BINANCE_SPOT_STREAM_URL=f"ws://{nowhere}",
        TICKMESH_COLLECTOR_BINANCE_SPOT_API_URL=f"http://{nowhere}/api",
        TICKMESH_COLLECTOR_BINANCE_USDM_STREAM_URL=f"ws://{nowhere}",
        TICKMESH_COLLECTOR_BINANCE_USDM_API_URL=f"http://{nowhere}/fapi",
        TICKMESH_COLLECTOR_HEALTH_INTERVAL_SECONDS="0.5",
    )
    gateway = await start_gateway(
        fresh_database_url, fresh_redis_url, tmp_path / "g.log", TICKMESH_COLLECTOR_ADDRESS=address
    )
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            admin = await login(client, *ADMIN)
            added = await client.post(
                "/api/v1/symbols",
                json={"exchange": "binance_usdm", "symbol": "BTCUSDT", "asset_type": "crypto"},
                headers=admin,
            )
            assert added.status_code == 201, added.text
            usdm: dict[str, object] = {}
            async with asyncio.timeout(30):
                while usdm.get("state") != "unreachable":
                    await asyncio.sleep(0.3)
                    health = (await client.get("/api/v1/health")).json()
                    sources = {source["source"]: source for source in health["sources"]}
                    usdm = sources.get("binance_usdm", {})
            assert usdm["error"]  # what failed, for the log and the dashboard
            assert sources["binance_usdm"]["updated_at"] is not None
    finally:
        assert await gateway.stop() == 0
        await collector.stop()
