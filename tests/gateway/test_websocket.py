"""`/ws/{instrument}` against a real bar service: auth, fan-out over one upstream, throttled pushes."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tickmesh.core.timeframes import BY_LABEL
from tickmesh.v2 import market_pb2

from ..ingest_helpers import publish_until_acked
from ..mesh_processes import ServiceProcess
from .processes import ADMIN, GatewayProcess, login, register, start_collector, start_gateway

MINUTE_NS = 60 * 1_000_000_000
START_NS = int(datetime(2024, 1, 2, tzinfo=UTC).timestamp()) * 1_000_000_000


async def _start_bars(database_url: str, redis_url: str, **env: str) -> ServiceProcess:
    """A bar service committing every 20 ms, with `env` on top."""
    bars = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": database_url,
            "TICKMESH_REDIS_URL": redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
            "TICKMESH_DRAIN_SECONDS": "1",
        }
        | env,
    )
    await bars.start()
    return bars


@pytest.fixture(scope="module")
async def collector_address(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A collector serving the module's instrument registry (WebSockets serve registered ones)."""
    collector, address = await start_collector(
        module_database_url, module_redis_url, tmp_path_factory.mktemp("ws") / "collector.log"
    )
    yield address
    await collector.stop()


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str,
    module_redis_url: str,
    collector_address: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[ServiceProcess, GatewayProcess, dict[str, str]]]:
    """A bar service and a gateway on it, plus an admin's header."""
    bars = await _start_bars(module_database_url, module_redis_url)
    gateway = await start_gateway(
        module_database_url,
        module_redis_url,
        tmp_path_factory.mktemp("ws") / "gateway.log",
        TICKMESH_COLLECTOR_ADDRESS=collector_address,
        TICKMESH_BARS_ADDRESS=bars.address,
        TICKMESH_GATEWAY_WS_HEARTBEAT_SECONDS="0.5",
    )
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        headers = await login(client, *ADMIN)
    yield bars, gateway, headers
    await gateway.stop()
    await bars.stop()


def _ws_url(gateway: GatewayProcess, instrument: str, token: str | None = None) -> str:
    url = gateway.base_url.replace("http://", "ws://") + f"/ws/{instrument}"
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


async def _until(
    gateway: GatewayProcess, name: str, holds: Callable[[float], bool], within: float = 20.0
) -> None:
    """Poll the gateway's metric `name` until `holds` is true of it."""
    async with asyncio.timeout(within):
        while not holds(await _gauge(gateway, name)):  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.2)


async def _read_to_the_end(ws: ClientConnection) -> None:
    """Read what got through until the connection ends (ConnectionClosed)."""
    async with asyncio.timeout(20):
        while True:
            await ws.recv()


def _trades(symbol: str, stream: str) -> list[market_pb2.TradeBatch]:
    """Trades in minute 0 and one in minute 3, so minute 0's bar becomes final at once."""
    times = [START_NS + s * 1_000_000_000 for s in (5, 20, 40)] + [START_NS + 3 * MINUTE_NS]
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=[1, 2, 3, 4],
        prices=[1000, 1050, 990, 1010],  # 100.0, 105.0, 99.0, 101.0 at scale 1
        quantities=[1, 2, 1, 1],
        event_time_ns=times,
        receive_time_ns=times,
        price_scale=1,
    )
    return [market_pb2.TradeBatch(stream_id=stream, sequence=1, trades=[run])]


async def test_ws_without_token_or_with_bad_token_is_closed_1008(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
) -> None:
    _, gateway, _ = mesh
    for url, first in (
        (_ws_url(gateway, "binance_usdm:BTCUSDT", "not-a-jwt"), None),
        (_ws_url(gateway, "binance_usdm:BTCUSDT"), {"type": "subscribe", "timeframes": ["1m"]}),
        (_ws_url(gateway, "binance_usdm:BTCUSDT"), {"type": "auth", "token": "forged.token.here"}),
    ):
        async with websockets.connect(url) as ws:
            if first is not None:
                await ws.send(json.dumps(first))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008


async def test_ws_of_a_malformed_instrument_is_closed_1008_naming_it(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
) -> None:
    _, gateway, headers = mesh
    token = headers["Authorization"].removeprefix("Bearer ")
    for instrument, said in (("BTCUSDT", "<venue>:<symbol>"), ("kraken:BTCUSDT", "kraken")):
        async with websockets.connect(_ws_url(gateway, instrument, token)) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason.startswith("instrument: ")
        assert said in closed.value.rcvd.reason


async def test_ws_fans_out_final_bar_to_clients_over_one_upstream(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
) -> None:
    bars, gateway, headers = mesh
    symbol = f"WS{secrets.token_hex(3).upper()}"
    await register(gateway.base_url, headers, f"simulator:{symbol}")
    token = headers["Authorization"].removeprefix("Bearer ")
    async with (
        websockets.connect(_ws_url(gateway, f"simulator:{symbol}", token)) as first,
        websockets.connect(_ws_url(gateway, f"simulator:{symbol}")) as second,
    ):
        await second.send(json.dumps({"type": "auth", "token": token}))
        for ws in (first, second):
            assert (await _next(ws, "welcome"))["instrument"] == f"simulator:{symbol}"
            await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m", "5m"]}))
            assert (await _next(ws, "subscribed"))["timeframes"] == ["1m", "5m"]
        await publish_until_acked(bars.address, _trades(symbol, f"ws-{symbol}"))
        for ws in (first, second):
            finals: list[dict[str, Any]] = []
            # The gateway's upstream carries a trade's bars of every timeframe in one response
            # (SubscribeRequest.max_batch): each of them still reaches the client.
            timeframes: set[str] = set()
            while not (
                any(bar["time"] == START_NS // 1_000_000_000 for bar in finals)
                and timeframes == {"1m", "5m"}
            ):
                update = await _next(ws, "bars")
                timeframes.add(update["timeframe"])
                finals += [
                    bar for bar in update["bars"] if bar["final"] and update["timeframe"] == "1m"
                ]
            bar = next(bar for bar in finals if bar["time"] == START_NS // 1_000_000_000)
            # Exact decimal strings, as the bar service wrote them.
            assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (
                "100",
                "105",
                "99",
                "99",
            )
            assert (bar["volume"], bar["quote_volume"]) == ("4", "409")
            assert bar["instrument"] == f"simulator:{symbol}"
        # One upstream for the shard, however many instruments and clients it carries.
        assert await _gauge(gateway, "tickmesh_ws_bar_upstreams") == 1
        assert await _gauge(gateway, "tickmesh_ws_clients") == 2


def _batch(symbol: str, sequence: int, trades: list[tuple[int, int, int]]) -> market_pb2.TradeBatch:
    """One batch of (trade id, price at scale 1, event time) trades of quantity 1."""
    times = [time_ns for _, _, time_ns in trades]
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=[trade_id for trade_id, _, _ in trades],
        prices=[price for _, price, _ in trades],
        quantities=[1] * len(trades),
        event_time_ns=times,
        receive_time_ns=times,
        price_scale=1,
    )
    return market_pb2.TradeBatch(stream_id=f"ws-{symbol}", sequence=sequence, trades=[run])


async def test_ws_pushes_a_closed_bar_at_once_not_an_interval_after_the_forming_one(
    module_database_url: str,
    module_redis_url: str,
    collector_address: str,
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
    tmp_path: Path,
) -> None:
    # One push per 30 s: were a first final throttled like forming bars, it would wait 30 s
    # behind the forming bar pushed just before it.
    bars, _, headers = mesh
    gateway = await start_gateway(
        module_database_url,
        module_redis_url,
        tmp_path / "gateway.log",
        TICKMESH_BARS_ADDRESS=bars.address,
        TICKMESH_COLLECTOR_ADDRESS=collector_address,
        TICKMESH_GATEWAY_WS_UPDATE_SECONDS="30",
    )
    try:
        symbol = f"WS{secrets.token_hex(3).upper()}"
        instrument = f"simulator:{symbol}"
        await register(gateway.base_url, headers, instrument)
        token = headers["Authorization"].removeprefix("Bearer ")
        async with websockets.connect(_ws_url(gateway, instrument, token)) as ws:
            await _next(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
            await _next(ws, "subscribed")
            await publish_until_acked(
                bars.address, [_batch(symbol, 1, [(1, 1000, START_NS + 5_000_000_000)])]
            )
            forming = await _next(ws, "bars")
            assert [bar["final"] for bar in forming["bars"]] == [False]
            # A trade in minute 3 moves the watermark past minute 0: its bar becomes final.
            pushed_at = time.monotonic()
            await publish_until_acked(
                bars.address, [_batch(symbol, 2, [(2, 1010, START_NS + 3 * MINUTE_NS)])]
            )
            closed = await _next(ws, "bars", within=10.0)
            assert time.monotonic() - pushed_at < 10.0
            assert (closed["bars"][0]["time"], closed["bars"][0]["final"]) == (
                START_NS // 1_000_000_000,
                True,
            )
    finally:
        await gateway.stop()


async def test_ws_heartbeat_and_bad_subscription_message(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
) -> None:
    _, gateway, headers = mesh
    token = headers["Authorization"].removeprefix("Bearer ")
    await register(gateway.base_url, headers, "simulator:BEAT")
    async with websockets.connect(_ws_url(gateway, "simulator:BEAT", token)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["2m"]}))
        error = await _next(ws, "error")
        assert "unknown" in error["detail"]
        beat = await _next(ws, "heartbeat", within=5)
        assert beat["time"].startswith("20")


def _minutes_of_trades(
    symbol: str, stream: str, sequence: int, first_minute: int, minutes: int
) -> market_pb2.TradeBatch:
    """One trade a minute for `minutes` minutes from `first_minute`, ids by minute."""
    span = range(first_minute, first_minute + minutes)
    times = [START_NS + m * MINUTE_NS for m in span]
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=[m + 1 for m in span],
        prices=[100 + m % 7 for m in span],
        quantities=[1] * minutes,
        event_time_ns=times,
        receive_time_ns=times,
    )
    return market_pb2.TradeBatch(stream_id=stream, sequence=sequence, trades=[run])


async def test_ws_client_that_stops_reading_is_closed_as_too_slow(
    mesh: tuple[ServiceProcess, GatewayProcess, dict[str, str]],
    module_database_url: str,
    module_redis_url: str,
    collector_address: str,
    tmp_path: Path,
) -> None:
    bars, _, headers = mesh
    gateway = await start_gateway(
        module_database_url,
        module_redis_url,
        tmp_path / "gateway.log",
        TICKMESH_COLLECTOR_ADDRESS=collector_address,
        TICKMESH_BARS_ADDRESS=bars.address,
        TICKMESH_GATEWAY_ALERTS_ENABLED="false",
        TICKMESH_GATEWAY_WS_MAX_BUFFERED_BYTES="1024",
        TICKMESH_GATEWAY_WS_SEND_TIMEOUT_SECONDS="1",
        # No heartbeat in the test's time: its send timing out would close the client too.
        TICKMESH_GATEWAY_WS_HEARTBEAT_SECONDS="120",
    )
    try:
        symbol = f"SLOW{secrets.token_hex(3).upper()}"
        await register(gateway.base_url, headers, f"simulator:{symbol}")
        token = headers["Authorization"].removeprefix("Bearer ")
        # A small receive buffer, and a client that takes at most one message off it.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        port = int(gateway.base_url.rsplit(":", 1)[1])
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        async with websockets.connect(
            _ws_url(gateway, f"simulator:{symbol}", token),
            sock=sock,
            max_queue=1,
            ping_interval=None,
        ) as ws:
            await _next(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "timeframes": list(BY_LABEL)}))
            await _next(ws, "subscribed")
            stream = f"slow-{symbol}"
            # Two weeks of minutes within a second: their final bars (about 7 MB of frames)
            # are more than the kernel's socket buffers hold (4 MiB at most here), so the
            # next push, a second later, finds the rest still waiting in the gateway. In
            # four batches, so that no burst overflows the bar service's subscriber backlog.
            for sequence in range(1, 5):
                batch = _minutes_of_trades(symbol, stream, sequence, (sequence - 1) * 5000, 5000)
                await publish_until_acked(bars.address, [batch])
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.5)
            await publish_until_acked(
                bars.address, [_minutes_of_trades(symbol, stream, 5, 20_000, 5)]
            )
            await _until(gateway, "tickmesh_ws_slow_clients_closed_total", lambda v: v == 1)
            with pytest.raises(ConnectionClosed):
                await _read_to_the_end(ws)
        await _until(gateway, "tickmesh_ws_clients", lambda v: v == 0)
    finally:
        await gateway.stop()


async def test_ws_gets_every_final_bar_though_the_upstream_was_cut_as_too_slow(
    module_database_url: str, module_redis_url: str, collector_address: str, tmp_path: Path
) -> None:
    # A bar service that ends any subscriber 100 final bars behind: a burst cuts the
    # gateway's upstream, which must resume after the last final bar it had.
    bars = await _start_bars(
        module_database_url, module_redis_url, TICKMESH_BARS_SUBSCRIBER_BACKLOG="100"
    )
    gateway = await start_gateway(
        module_database_url,
        module_redis_url,
        tmp_path / "gateway.log",
        TICKMESH_COLLECTOR_ADDRESS=collector_address,
        TICKMESH_BARS_ADDRESS=bars.address,
        TICKMESH_GATEWAY_ALERTS_ENABLED="false",
    )
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            admin = await login(client, *ADMIN)
            token = admin["Authorization"].removeprefix("Bearer ")
        symbol = f"CUT{secrets.token_hex(3).upper()}"
        await register(gateway.base_url, admin, f"simulator:{symbol}")
        stream = f"cut-{symbol}"
        async with websockets.connect(
            _ws_url(gateway, f"simulator:{symbol}", token), max_size=None
        ) as ws:
            await _next(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
            await _next(ws, "subscribed")
            finals: set[int] = set()

            async def receive_finals(through_minute: int) -> None:
                last = (START_NS + through_minute * MINUTE_NS) // 1_000_000_000
                while last not in finals:
                    update = await _next(ws, "bars", within=30)
                    finals.update(bar["time"] for bar in update["bars"] if bar["final"])

            # Minute 0 final (the gateway now has a resume point), then 600 minutes at once.
            await publish_until_acked(bars.address, [_minutes_of_trades(symbol, stream, 1, 0, 2)])
            await receive_finals(0)
            await publish_until_acked(bars.address, [_minutes_of_trades(symbol, stream, 2, 2, 600)])
            await receive_finals(600)
        expected = {(START_NS + m * MINUTE_NS) // 1_000_000_000 for m in range(601)}
        assert finals >= expected
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            text = (await client.get("/metrics")).text
        assert 'tickmesh_ws_bar_upstream_errors_total{code="RESOURCE_EXHAUSTED"}' in text
    finally:
        await gateway.stop()
        await bars.stop()
