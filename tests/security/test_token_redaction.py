"""Item 9: a `?token=` access token never lands in the access log or in a trace.

Browsers cannot set headers on a WebSocket, so clients may pass the token in the query.
That query is in uvicorn's access log and in OpenTelemetry's `http.url`/`url.query`; both are
redacted, and production refuses query tokens outright (the dashboard sends an auth message).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import httpx
import pytest
import websockets
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.exceptions import ConnectionClosed

from ..gateway.processes import ADMIN, start_gateway
from .auth_harness import gateway_app, login, register, served

INSTRUMENT = "binance_spot:BTCUSDT"


async def _first_message(url: str, auth_message: dict[str, str] | None = None) -> dict[str, str]:
    """The first message the socket sends, or {"closed": code, "reason": ...}."""
    async with websockets.connect(url) as socket:
        if auth_message is not None:
            await socket.send(json.dumps(auth_message))
        try:
            message: dict[str, str] = json.loads(await asyncio.wait_for(socket.recv(), 10))
        except ConnectionClosed as closed:
            return {
                "closed": str(closed.rcvd.code if closed.rcvd else 0),
                "reason": closed.rcvd.reason if closed.rcvd else "",
            }
        return message


async def test_query_token_is_not_in_the_access_log(
    database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "gateway.log"
    gateway = await start_gateway(database_url, fresh_redis_url, log_path)
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            token = (await login(client, *ADMIN))["access_token"]
            answered = await client.get("/api/v1/auth/me", params={"token": token})
            assert answered.status_code == 401  # a query token is no HTTP credential
        ws_url = gateway.base_url.replace("http://", "ws://") + f"/ws/{INSTRUMENT}?token={token}"
        welcome = await _first_message(ws_url)
        assert welcome["type"] == "welcome"
    finally:
        await gateway.stop()
    log = log_path.read_text()
    assert "/ws/" in log
    assert "/api/v1/auth/me" in log
    assert token not in log  # ...without the token
    assert "token=[REDACTED]" in log


async def test_query_token_is_not_in_trace_attributes(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with gateway_app(db_pool, redis_url, tracer_provider=provider) as gateway:
        name = await register(gateway.client)
        token = (await login(gateway.client, name, "correct horse"))["access_token"]
        async with served(gateway.app) as base_url:
            async with httpx.AsyncClient(base_url=base_url) as client:
                await client.get("/api/v1/auth/me", params={"token": token, "lang": "en"})
            ws_url = base_url.replace("http://", "ws://") + f"/ws/{INSTRUMENT}?token={token}"
            assert (await _first_message(ws_url))["type"] == "welcome"
    provider.shutdown()
    spans = exporter.get_finished_spans()
    server_spans = [s for s in spans if s.attributes and "http.url" in s.attributes]
    assert len(server_spans) >= 2
    for span in spans:
        for key, value in (span.attributes or {}).items():
            assert token not in str(value), f"{span.name}: {key} carries the token"
    targets = {str(s.attributes["http.url"]) for s in server_spans if s.attributes}
    assert any("token=REDACTED" in t and "lang=en" in t for t in targets), targets


@pytest.mark.parametrize("environment", ["production"])
async def test_production_refuses_query_tokens_but_takes_auth_messages(
    db_pool: asyncpg.Pool, redis_url: str, environment: str
) -> None:
    async with gateway_app(db_pool, redis_url, environment=environment) as gateway:
        name = await register(gateway.client)
        token = (await login(gateway.client, name, "correct horse"))["access_token"]
        async with served(gateway.app) as base_url:
            ws_base = base_url.replace("http://", "ws://") + f"/ws/{INSTRUMENT}"
            refused = await _first_message(f"{ws_base}?token={token}")
            assert refused.get("closed") == "1008", refused
            assert "auth" in refused["reason"]
            welcome = await _first_message(ws_base, {"type": "auth", "token": token})
            assert welcome["type"] == "welcome"
