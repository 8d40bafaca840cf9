"""Gateway test fixtures: the real app on the run's PostgreSQL and Redis, called through ASGI."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from argon2 import PasswordHasher
from fastapi import FastAPI

from tickmesh.core.metrics import CoreMetrics
from tickmesh.gateway.app import create_app
from tickmesh.gateway.deps import GatewayServices
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.settings import GatewaySettings
from tickmesh.gateway.tokens import Role
from tickmesh.gateway.wiring import build_services

TEST_SECRET = "test-secret-0123456789abcdef0123456789"
# Ports nothing listens on: every gRPC backend is down unless a test starts one.
DOWN = "127.0.0.1:1"


def gateway_settings(**overrides: Any) -> GatewaySettings:
    """Settings for an in-process gateway: fixed key, generous limits, backends down."""
    values: dict[str, Any] = {
        "environment": "test",
        "gateway_jwt_secret": TEST_SECRET,
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
class Gateway:
    """An app under test, its services and an HTTP client on it."""

    app: FastAPI
    services: GatewayServices
    client: httpx.AsyncClient

    async def user(self, role: Role = "viewer", password: str = "correct horse") -> TestUser:
        """A fresh user of `role`, logged in."""
        name = f"u{secrets.token_hex(6)}"
        user = await self.services.accounts.register(name, password, "viewer")
        if role != "viewer":
            await self.services.accounts.update(user.id, role, None)
        reply = await self.client.post(
            "/api/v1/auth/login", json={"username": name, "password": password}
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return TestUser(user.id, name, password, body["access_token"], body["refresh_token"])


@dataclass
class TestUser:
    """A user and its tokens."""

    id: int
    username: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of its access token."""
        return {"Authorization": f"Bearer {self.access_token}"}


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(db_pool: asyncpg.Pool, redis_url: str) -> AsyncIterator[GatewayFactory]:
    """Build gateways with setting overrides; everything is closed after the test."""
    opened: list[tuple[Gateway, redis.Redis]] = []

    async def make(**overrides: Any) -> Gateway:
        settings = gateway_settings(**overrides)
        client = redis.Redis.from_url(redis_url)
        services = build_services(
            settings,
            GatewayMetrics(CoreMetrics()),
            db_pool,
            client,
            # One fast round of argon2: the tests check the flow, not the cost.
            password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
            rate_limit_prefix=f"test:{secrets.token_hex(4)}:",
        )
        app = create_app(services)
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        )
        gateway = Gateway(app, services, http)
        opened.append((gateway, client))
        return gateway

    yield make
    for gateway, client in opened:
        await gateway.client.aclose()
        await gateway.services.backends.close()
        await client.aclose()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> Gateway:
    """A gateway with the default test settings."""
    return await make_gateway()
