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
            added = await client.post(
                "/api/v1/symbols",
                json={"symbol": "ETHUSDT", "exchange": "binance_spot", "asset_type": "crypto"},
                headers=admin,
            )
            assert added.status_code == 201, added.text
            assert added.json()["active"] is True
            listed = await client.get("/api/v1/symbols", headers=admin)
            assert "ETHUSDT" in [s["symbol"] for s in listed.json()]
            gone = await client.delete("/api/v1/symbols/ETHUSDT", headers=admin)
            assert gone.json()["active"] is False
            missing = await client.delete("/api/v1/symbols/NOSUCH", headers=admin)
            assert missing.status_code == 404
            health = (await client.get("/api/v1/health")).json()
            assert health["components"]["collector"]["status"] == "serving"
    finally:
        assert await gateway.stop() == 0
        await collector.stop()
