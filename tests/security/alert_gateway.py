"""A real gateway process for the alert security tests, and rows written around its API.

Rows go straight into PostgreSQL where a test must stand for data an older version stored
(targets that today's validation refuses) or for firings the engine would have recorded.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from ..gateway.processes import ADMIN, GatewayProcess, login, start_gateway


@dataclass
class AlertGateway:
    """A running gateway, a client on it, an admin's header and a pool on its database."""

    process: GatewayProcess
    client: httpx.AsyncClient
    admin: dict[str, str]
    pool: asyncpg.Pool

    async def trader(self) -> tuple[int, dict[str, str]]:
        """A new user promoted to trader: its id and Authorization header."""
        name = f"t{secrets.token_hex(6)}"
        password = "trader-password-1"
        reply = await self.client.post(
            "/api/v1/auth/register", json={"username": name, "password": password}
        )
        assert reply.status_code == 201, reply.text
        user_id = int(reply.json()["id"])
        promoted = await self.client.patch(
            f"/api/v1/users/{user_id}", json={"role": "trader"}, headers=self.admin
        )
        assert promoted.status_code == 200, promoted.text
        return user_id, await login(self.client, name, password)

    async def insert_alert(
        self,
        user_id: int,
        channel: str,
        target: str | None,
        parameters: str = "{}",
        symbol: str = "SECUSDT",
        threshold: float = 1.0,
        cooldown: int = 300,
    ) -> int:
        """A price_above alert row as an older version might have stored it; its id."""
        alert_id: int = await self.pool.fetchval(
            "INSERT INTO alerts (user_id, exchange, symbol, condition, threshold, parameters, "
            "channel, target, cooldown) VALUES ($1, 'binance_spot', $2, 'price_above', $3, "
            "$4::jsonb, $5, $6, $7) RETURNING id",
            user_id,
            symbol,
            threshold,
            parameters,
            channel,
            target,
            cooldown,
        )
        return alert_id

    async def insert_pending_firing(self, alert_id: int, due_in_seconds: float = 0.0) -> int:
        """A firing waiting for delivery, due in `due_in_seconds`; its id."""
        event_id: int = await self.pool.fetchval(
            "INSERT INTO alert_events (alert_id, bar_time, value, message, delivery, "
            "next_attempt_at) VALUES ($1, now(), 2, 'price above 1', 'pending', "
            "now() + make_interval(secs => $2)) RETURNING id",
            alert_id,
            due_in_seconds,
        )
        return event_id

    async def delivery(self, event_id: int) -> tuple[str, int]:
        """The delivery state and attempts of a firing."""
        row = await self.pool.fetchrow(
            "SELECT delivery, delivery_attempts FROM alert_events WHERE id = $1", event_id
        )
        assert row is not None
        return row["delivery"], row["delivery_attempts"]


@asynccontextmanager
async def alert_gateway(
    database_url: str, redis_url: str, log_path: Path, **env: str
) -> AsyncIterator[AlertGateway]:
    """Start a gateway (fast delivery retries unless `env` says otherwise) and stop it after."""
    settings = {"TICKMESH_GATEWAY_WEBHOOK_BACKOFF_SECONDS": "0.05"} | env
    process = await start_gateway(database_url, redis_url, log_path, **settings)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with httpx.AsyncClient(base_url=process.base_url, timeout=10) as client:
            admin = await login(client, *ADMIN)
            yield AlertGateway(process, client, admin, pool)
    finally:
        await pool.close()
        await process.stop()


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], within_seconds: float = 10.0
) -> float:
    """Poll `check` until true; the seconds it took. Fails naming `what` when it never is."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within_seconds, f"not within {within_seconds}s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started
