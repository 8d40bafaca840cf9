"""The gateway's chart cache against a real bar service: new and revised bars are never missed,
a cached answer still checks its caller, and a final bar pushed over WebSocket is in the next
REST answer."""

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

from tickmesh.v2 import market_pb2

from ..ingest_helpers import publish_until_acked
from ..mesh_processes import ServiceProcess
from .processes import ADMIN, GatewayProcess, login, register, start_collector, start_gateway

MINUTE_NS = 60 * 1_000_000_000
SECOND_NS = 1_000_000_000
START_NS = int(datetime(2024, 3, 4, tzinfo=UTC).timestamp()) * SECOND_NS
WITHIN_SECONDS = 20.0

Mesh = tuple[ServiceProcess, GatewayProcess, dict[str, str]]


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    """A bar service, a collector (the registry) and a gateway on both, plus an admin's header."""
    logs = tmp_path_factory.mktemp("chart-cache")
    collector, collector_address = await start_collector(
        module_database_url, module_redis_url, logs / "collector.log"
    )
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
        logs / "gateway.log",
        TICKMESH_COLLECTOR_ADDRESS=collector_address,
        TICKMESH_BARS_ADDRESS=bars.address,
        TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS="5",
        TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE="100000",
    )
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        headers = await login(client, *ADMIN)
    yield bars, gateway, headers
    await gateway.stop()
    await collector.stop()
    await bars.stop()


class _Trades:
    """Trades of one symbol on one ingest stream, published one batch at a time."""

    def __init__(self, bars: ServiceProcess, symbol: str) -> None:
        self.bars = bars
        self.symbol = symbol
        self.sequence = 0
        self.trade_id = 0

    async def publish(self, *trades: tuple[int, float]) -> None:
        """(event time ns, price) trades, acknowledged (durable) before returning."""
        self.sequence += 1
        ids = list(range(self.trade_id + 1, self.trade_id + 1 + len(trades)))
        self.trade_id += len(trades)
        times = [time_ns for time_ns, _ in trades]
        run = market_pb2.SymbolTrades(
            exchange=market_pb2.EXCHANGE_SIMULATOR,
            symbol=self.symbol,
            trade_ids=ids,
            prices=[round(price * 10) for _, price in trades],  # mantissas of scale 1
            quantities=[1] * len(trades),
            event_time_ns=times,
            receive_time_ns=times,
            price_scale=1,
        )
        batch = market_pb2.TradeBatch(
            stream_id=f"cache-{self.symbol}", sequence=self.sequence, trades=[run]
        )
        await publish_until_acked(self.bars.address, [batch])


async def _lookups(client: httpx.AsyncClient) -> dict[str, float]:
    """The gateway's chart cache hits and misses so far."""
    counts = {"hit": 0.0, "miss": 0.0}
    for line in (await client.get("/metrics")).text.splitlines():
        for result in counts:
            if line.startswith(f'tickmesh_chart_cache_lookups_total{{result="{result}"}} '):
                counts[result] = float(line.split()[1])
    return counts


async def _chart(client: httpx.AsyncClient, symbol: str) -> list[dict[str, Any]]:
    reply = await client.get(f"/api/v1/charts/simulator:{symbol}", params={"indicators": "false"})
    assert reply.status_code == 200, reply.text
    bars: list[dict[str, Any]] = reply.json()["bars"]
    return bars


async def _chart_until(
    client: httpx.AsyncClient, symbol: str, ready: Any, what: str
) -> list[dict[str, Any]]:
    """GET the chart until `ready(bars)`; a cache that missed a change would never get there."""
    deadline = time.monotonic() + WITHIN_SECONDS
    while not ready(bars := await _chart(client, symbol)):
        assert time.monotonic() < deadline, f"chart never showed {what}: {bars}"
        await asyncio.sleep(0.1)
    return bars


async def _served_from_cache(client: httpx.AsyncClient, symbol: str) -> list[dict[str, Any]]:
    """GET the chart until one answer comes from the cache (bars still settling, e.g. the
    roll-ups of a new minute, rightly make the next answer a miss); return that answer."""
    deadline = time.monotonic() + WITHIN_SECONDS
    while True:
        before = await _lookups(client)
        bars = await _chart(client, symbol)
        if (await _lookups(client))["hit"] == before["hit"] + 1:
            return bars
        assert time.monotonic() < deadline, "the chart was never served from the cache"
        await asyncio.sleep(0.1)


def _at(bars: list[dict[str, Any]], minute: int) -> dict[str, Any] | None:
    wanted = (START_NS + minute * MINUTE_NS) // SECOND_NS
    return next((bar for bar in bars if bar["time"] == wanted), None)


async def test_cached_chart_shows_new_and_revised_bars(mesh: Mesh) -> None:
    bars, gateway, headers = mesh
    symbol = f"CC{secrets.token_hex(3).upper()}"
    trades = _Trades(bars, symbol)
    await trades.publish((START_NS + 5 * SECOND_NS, 100.0), (START_NS + 3 * MINUTE_NS, 101.0))
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=headers) as client:
        await _chart_until(client, symbol, lambda b: _at(b, 0) is not None, "the first final bar")
        cached = await _served_from_cache(client, symbol)
        assert _at(cached, 0) is not None

        # A late trade revises the final bar of minute 0.
        await trades.publish((START_NS + 50 * SECOND_NS, 250.0))
        revised = await _chart_until(
            client, symbol, lambda b: (_at(b, 0) or {}).get("revision", 0) >= 1, "the revision"
        )
        bar = _at(revised, 0)
        assert bar is not None
        assert (bar["high"], bar["close"], bar["trade_count"]) == ("250", "250", 2)

        # Later trades make new bars (minute 9 final by the watermark of minute 12's trade);
        # the cached answer must make room for them.
        await trades.publish((START_NS + 9 * MINUTE_NS, 103.0), (START_NS + 12 * MINUTE_NS, 104.0))
        newer = await _chart_until(
            client, symbol, lambda b: _at(b, 9) is not None, "the bar of minute 9"
        )
        assert [bar["time"] for bar in newer] == sorted(bar["time"] for bar in newer)
        # And it is cached again once nothing changes, with the new bar in it.
        assert _at(await _served_from_cache(client, symbol), 9) is not None


async def test_cached_chart_still_checks_the_caller(mesh: Mesh) -> None:
    bars, gateway, admin = mesh
    symbol = f"CA{secrets.token_hex(3).upper()}"
    await _Trades(bars, symbol).publish(
        (START_NS + 5 * SECOND_NS, 100.0), (START_NS + 3 * MINUTE_NS, 101.0)
    )
    name, password = f"viewer{secrets.token_hex(4)}", "viewer-password-1"
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        registered = await client.post(
            "/api/v1/auth/register", json={"username": name, "password": password}
        )
        assert registered.status_code == 201, registered.text
        viewer = await login(client, name, password)
        client.headers.update(viewer)
        await _chart_until(client, symbol, lambda b: _at(b, 0) is not None, "the first bar")
        before = await _lookups(client)
        assert (
            await client.get(f"/api/v1/charts/simulator:{symbol}?indicators=false")
        ).status_code == 200
        assert (await _lookups(client))["hit"] == before["hit"] + 1  # the answer is cached

        anonymous = await client.get(
            f"/api/v1/charts/simulator:{symbol}?indicators=false", headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401
        disabled = await client.patch(
            f"/api/v1/users/{registered.json()['id']}", json={"disabled": True}, headers=admin
        )
        assert disabled.status_code == 200, disabled.text
        refused = await client.get(f"/api/v1/charts/simulator:{symbol}?indicators=false")
        assert refused.status_code == 401
        assert refused.json()["detail"] == "account disabled"
        served = await client.get(
            f"/api/v1/charts/simulator:{symbol}?indicators=false", headers=admin
        )
        assert served.status_code == 200


async def test_final_bar_pushed_over_websocket_is_in_the_next_chart(mesh: Mesh) -> None:
    bars, gateway, headers = mesh
    symbol = f"CW{secrets.token_hex(3).upper()}"
    trades = _Trades(bars, symbol)
    await trades.publish((START_NS + 5 * SECOND_NS, 100.0), (START_NS + 3 * MINUTE_NS, 101.0))
    token = headers["Authorization"].removeprefix("Bearer ")
    await register(gateway.base_url, headers, f"simulator:{symbol}")
    url = gateway.base_url.replace("http://", "ws://") + f"/ws/simulator:{symbol}?token={token}"
    async with (
        httpx.AsyncClient(base_url=gateway.base_url, headers=headers) as client,
        websockets.connect(url) as ws,
    ):
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
        await _chart_until(client, symbol, lambda b: _at(b, 0) is not None, "the first bar")
        await _chart(client, symbol)  # cached now
        await trades.publish((START_NS + 7 * MINUTE_NS, 102.0), (START_NS + 10 * MINUTE_NS, 1.0))
        deadline = time.monotonic() + WITHIN_SECONDS
        pushed: list[int] = []
        while (START_NS + 7 * MINUTE_NS) // SECOND_NS not in pushed:
            message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if message["type"] == "bars":
                pushed += [bar["time"] for bar in message["bars"] if bar["final"]]
        # The moment the push is seen, REST answers with every bar pushed so far.
        chart = {bar["time"] for bar in await _chart(client, symbol)}
        assert set(pushed) <= chart, (pushed, chart)
