"""A real collector, bar service and gateway for the WebSocket limit tests, and small helpers.

The collector holds the instrument registry the gateway checks subscriptions against; the
instruments are registered through the gateway's admin API, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from ..gateway.processes import ADMIN, GatewayProcess, login, start_collector, start_gateway
from ..mesh_processes import ServiceProcess


@dataclass
class WsMesh:
    """The running gateway, an admin's header and one registered instrument."""

    gateway: GatewayProcess
    admin: dict[str, str]
    instrument: str

    def url(self, instrument: str | None = None, token: str | None = None) -> str:
        """The WebSocket URL of `instrument` (the registered one by default)."""
        base = self.gateway.base_url.replace("http://", "ws://")
        url = f"{base}/ws/{instrument or self.instrument}"
        return url if token is None else f"{url}?token={token}"

    async def register(self, symbol: str) -> str:
        """Register a simulator instrument through the admin API; its text form."""
        async with httpx.AsyncClient(base_url=self.gateway.base_url) as client:
            reply = await client.post(
                "/api/v1/symbols",
                json={"exchange": "simulator", "symbol": symbol, "asset_type": "crypto"},
                headers=self.admin,
            )
        reply.raise_for_status()
        return str(reply.json()["instrument"])

    async def user(self) -> tuple[int, str]:
        """A fresh viewer: its id and an access token."""
        name = f"ws{secrets.token_hex(5)}"
        password = "correct horse battery"
        async with httpx.AsyncClient(base_url=self.gateway.base_url) as client:
            made = await client.post(
                "/api/v1/auth/register", json={"username": name, "password": password}
            )
            made.raise_for_status()
            header = await login(client, name, password)
        return int(made.json()["id"]), header["Authorization"].removeprefix("Bearer ")

    async def disable(self, user_id: int) -> None:
        """Disable a user through the admin API."""
        async with httpx.AsyncClient(base_url=self.gateway.base_url) as client:
            reply = await client.patch(
                f"/api/v1/users/{user_id}", json={"disabled": True}, headers=self.admin
            )
        reply.raise_for_status()

    async def refusals(self, reason: str) -> float:
        """The gateway's count of WebSocket refusals for `reason` (0 when never counted)."""
        async with httpx.AsyncClient(base_url=self.gateway.base_url) as client:
            page = (await client.get("/metrics")).text
        pattern = rf'^tickmesh_ws_refused_total\{{reason="{re.escape(reason)}"\}} (\S+)$'
        found = re.search(pattern, page, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


@asynccontextmanager
async def ws_mesh(
    database_url: str, redis_url: str, logs: Path, **gateway_env: str
) -> AsyncIterator[WsMesh]:
    """Collector, bars and a gateway with `gateway_env`; one simulator instrument registered."""
    collector, collector_address = await start_collector(
        database_url, redis_url, logs / "collector.log"
    )
    bars = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": database_url,
            "TICKMESH_REDIS_URL": redis_url,
            "TICKMESH_DRAIN_SECONDS": "1",
        },
    )
    gateway: GatewayProcess | None = None
    try:
        await bars.start()
        gateway = await start_gateway(
            database_url,
            redis_url,
            logs / "gateway.log",
            TICKMESH_COLLECTOR_ADDRESS=collector_address,
            TICKMESH_BARS_ADDRESS=bars.address,
            TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE="100000",
            TICKMESH_GATEWAY_AUTH_RATE_LIMIT_PER_MINUTE="100000",
            **gateway_env,
        )
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            admin = await login(client, *ADMIN)
        mesh = WsMesh(gateway, admin, "")
        mesh.instrument = await mesh.register(f"SEC{secrets.token_hex(3).upper()}")
        yield mesh
    finally:
        if gateway is not None:
            await gateway.stop()
        if bars.running:
            await bars.stop()
        await collector.stop()


async def next_of(ws: ClientConnection, kind: str, within: float = 10.0) -> dict[str, Any]:
    """The next message of type `kind` (others are skipped)."""
    deadline = time.monotonic() + within
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == kind:
            return dict(message)
