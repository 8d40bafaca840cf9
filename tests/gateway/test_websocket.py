"""`/ws/{symbol}` against a real bar service: auth, fan-out over one upstream, throttled pushes."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tickmesh.v1 import market_pb2

from ..ingest_helpers import publish_until_acked
from ..mesh_processes import ServiceProcess
from .processes import ADMIN, GatewayProcess, login, start_gateway

MINUTE_NS = 60 * 1_000_000_000
START_NS = int(datetime(2024, 1, 2, tzinfo=UTC).timestamp()) * 1_000_000_000


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ServiceProcess, GatewayProcess, dict[str, str]]]:
    """A bar service and a gateway on it, plus an admin's header."""
    bars = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": module_database_url,
            "TICKMESH_REDIS_URL": module_redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
            "TICKMESH_DRAIN_SECONDS": "1",
        },
    )
    await bars.start()
    gateway = await start_gateway(
        module_database_url,
        module_redis_url,
        tmp_path_factory.mktemp("ws") / "gateway.log",
        TICKMESH_BARS_ADDRESS=bars.address,
        TICKMESH_GATEWAY_WS_HEARTBEAT_SECONDS="0.5",
    )
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        headers = await login(client, *ADMIN)
    yield bars, gateway, headers
    await gateway.stop()
    await bars.stop()


def _ws_url(gateway: GatewayProcess, symbol: str, token: str | None = None) -> str:
    url = gateway.base_url.replace("http://", "ws://") + f"/ws/{symbol}"
    return url if token is None else f"{url}?token={token}"


async def _next(ws: ClientConnection, kind: str, within: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == kind:
            return dict(message)


async def _gauge(gateway: GatewayProcess, name: str) -> float:
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        text = (await client.get("/metrics")).text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def _trades(symbol: str, stream: str) -> list[market_pb2.TradeBatch]:
    """Trades in minute 0 and one in minute 3, so minute 0's bar becomes final at once."""
    times = [START_NS + s * 1_000_000_000 for s in (5, 20, 40)] + [START_NS + 3 * MINUTE_NS]
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=[1, 2, 3, 4],
        prices=[100.0, 105.0, 99.0, 101.0],
        quantities=[1.0, 2.0, 1.0, 1.0],
        event_time_ns=times,
        receive_time_ns=times,
    )
    return [market_pb2.TradeBatch(stream_id=stream, sequence=1, trades=[run])]


async def test_ws_without_token_or_with_bad_token_is_closed_1008(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
) -> None:
    _, gateway, _ = mesh
    for url, first in (
        (_ws_url(gateway, "BTCUSDT", "not-a-jwt"), None),
        (_ws_url(gateway, "BTCUSDT"), {"type": "subscribe", "timeframes": ["1m"]}),
        (_ws_url(gateway, "BTCUSDT"), {"type": "auth", "token": "forged.token.here"}),
    ):
        async with websockets.connect(url) as ws:
            if first is not None:
                await ws.send(json.dumps(first))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008


async def test_ws_fans_out_final_bar_to_clients_over_one_upstream(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
) -> None:
    bars, gateway, headers = mesh
    symbol = f"WS{secrets.token_hex(3).upper()}"
    token = headers["Authorization"].removeprefix("Bearer ")
    # The alert engine may watch other symbols of the shared database: count relative to now.
    upstreams_before = await _gauge(gateway, "tickmesh_ws_bar_upstreams")
    async with (
        websockets.connect(_ws_url(gateway, symbol, token)) as first,
        websockets.connect(_ws_url(gateway, symbol)) as second,
    ):
        await second.send(json.dumps({"type": "auth", "token": token}))
        for ws in (first, second):
            await _next(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m", "5m"]}))
            assert (await _next(ws, "subscribed"))["timeframes"] == ["1m", "5m"]
        await publish_until_acked(bars.address, _trades(symbol, f"ws-{symbol}"))
        for ws in (first, second):
            finals: list[dict[str, Any]] = []
            while not any(bar["time"] == START_NS // 1_000_000_000 for bar in finals):
                update = await _next(ws, "bars")
                finals += [
                    bar for bar in update["bars"] if bar["final"] and update["timeframe"] == "1m"
                ]
            bar = next(bar for bar in finals if bar["time"] == START_NS // 1_000_000_000)
            assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (
                100.0,
                105.0,
                99.0,
                99.0,
            )
            assert bar["volume"] == 4.0
            assert bar["symbol"] == symbol
        assert await _gauge(gateway, "tickmesh_ws_bar_upstreams") == upstreams_before + 1
        assert await _gauge(gateway, "tickmesh_ws_clients") == 2


async def test_ws_heartbeat_and_bad_subscription_message(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
) -> None:
    _, gateway, headers = mesh
    token = headers["Authorization"].removeprefix("Bearer ")
    async with websockets.connect(_ws_url(gateway, "ETHUSDT", token)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["2m"]}))
        error = await _next(ws, "error")
        assert "unknown" in error["detail"]
        beat = await _next(ws, "heartbeat", within=5)
        assert beat["time"].startswith("20")
