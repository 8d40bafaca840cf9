"""The real gateway app for the account and edge security tests, in process or on a real socket.

Not a conftest: other security modules bring fixtures of their own, so these are plain async
context managers on the run's `db_pool` and `redis_url`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import redis.asyncio as redis
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from tickmesh.core.metrics import CoreMetrics
from tickmesh.gateway.app import create_app
from tickmesh.gateway.deps import GatewayServices
from tickmesh.gateway.frame_protocol import FrameWritingProtocol
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.settings import GatewaySettings
from tickmesh.gateway.wiring import build_services

from ..grpc_helpers import free_port

SECRET = "security-test-secret-0123456789abcdef"
DOWN = "127.0.0.1:1"  # no backend listens here


def fast_hasher() -> PasswordHasher:
    """One small round of argon2: these tests check the flow, not the cost."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def settings_for(**overrides: Any) -> GatewaySettings:
    """Test settings: a fixed key, generous limits, backends down; `overrides` on top."""
    values: dict[str, Any] = {
        "environment": "test",
        "gateway_jwt_secret": SECRET,
        "gateway_rate_limit_per_minute": 100_000,
        "gateway_auth_rate_limit_per_minute": 100_000,
        "collector_address": DOWN,
        "bars_address": DOWN,
        "analytics_address": DOWN,
        "gateway_backend_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@dataclass
class AppUnderTest:
    """The app, its services and an in-process HTTP client on it."""

    app: FastAPI
    services: GatewayServices
    client: httpx.AsyncClient


@asynccontextmanager
async def gateway_app(
    db_pool: asyncpg.Pool,
    redis_url: str,
    hasher: PasswordHasher | None = None,
    tracer_provider: TracerProvider | None = None,
    **overrides: Any,
) -> AsyncIterator[AppUnderTest]:
    """A gateway app on the run's database and Redis (own rate-limit keys), closed afterwards."""
    settings = settings_for(**overrides)
    client = redis.Redis.from_url(redis_url)
    services = build_services(
        settings,
        GatewayMetrics(CoreMetrics()),
        db_pool,
        client,
        password_hasher=hasher or fast_hasher(),
        rate_limit_prefix=f"security:{secrets.token_hex(4)}:",
    )
    app = create_app(services, tracer_provider)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")
    try:
        yield AppUnderTest(app, services, http)
    finally:
        await http.aclose()
        await services.backends.close()
        await client.aclose()


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """`app` behind a real uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
            ws=FrameWritingProtocol,  # as the gateway's main serves it
            ws_per_message_deflate=False,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def register(client: httpx.AsyncClient, password: str = "correct horse") -> str:
    """A fresh viewer registered through the API; returns its name."""
    name = f"u{secrets.token_hex(6)}"
    reply = await client.post(
        "/api/v1/auth/register", json={"username": name, "password": password}
    )
    assert reply.status_code == 201, reply.text
    return name


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, Any]:
    """The token pair of a successful login."""
    reply = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a token pair's access token."""
    return {"Authorization": f"Bearer {tokens['access_token']}"}
