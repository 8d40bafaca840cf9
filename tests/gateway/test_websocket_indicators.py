"""`/ws/{instrument}` pushes each new indicator row of the subscribed timeframes, from analytics."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets

from tickmesh.v2 import market_pb2

from ..ingest_helpers import publish_until_acked
from ..mesh_processes import ServiceProcess
from .processes import GatewayProcess, bars_analytics_gateway, register

MINUTE_NS = 60 * 1_000_000_000
START_NS = int(datetime(2024, 1, 3, tzinfo=UTC).timestamp()) * 1_000_000_000
WITHIN_SECONDS = 30.0


@pytest.fixture
async def mesh(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, GatewayProcess, str]]:
    """Bars, analytics on it, a gateway on both (no tracing), and an admin's access token."""
    async with bars_analytics_gateway(
        fresh_database_url, fresh_redis_url, tmp_path / "gateway.log"
    ) as running:
        yield running.bars, running.gateway, running.token


def _batch(symbol: str, sequence: int, seconds: list[int]) -> market_pb2.TradeBatch:
    """One batch of `symbol` with a trade at each of `seconds` after START_NS."""
    times = [START_NS + second * 1_000_000_000 for second in seconds]
    first_id = sequence * 100
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=list(range(first_id, first_id + len(times))),
        prices=[100 + i for i in range(len(times))],
        quantities=[1] * len(times),
        event_time_ns=times,
        receive_time_ns=times,
    )
    return market_pb2.TradeBatch(stream_id=f"ind-{symbol}", sequence=sequence, trades=[run])


def _admin(token: str) -> dict[str, str]:
    """The admin's Authorization header."""
    return {"Authorization": f"Bearer {token}"}


async def _rows_until(
    ws: websockets.ClientConnection, rows: list[dict[str, Any]], timeframe: str, time_s: int
) -> None:
    """Append every indicator message to `rows` until the `timeframe` row of `time_s` came."""
    deadline = time.monotonic() + WITHIN_SECONDS
    while not any(r["timeframe"] == timeframe and r["indicators"]["time"] == time_s for r in rows):
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == "indicators":
            rows.append(message)


async def test_ws_pushes_indicator_rows_of_subscribed_timeframes_only(
    mesh: tuple[ServiceProcess, GatewayProcess, str],
) -> None:
    bars, gateway, token = mesh
    symbol = f"IN{secrets.token_hex(3).upper()}"
    await register(gateway.base_url, _admin(token), f"simulator:{symbol}")
    url = gateway.base_url.replace("http://", "ws://") + f"/ws/simulator:{symbol}?token={token}"
    start_s = START_NS // 1_000_000_000
    both: list[dict[str, Any]] = []
    five: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws_both, websockets.connect(url) as ws_five:
        for ws, timeframes in ((ws_both, ["1m", "5m"]), (ws_five, ["5m"])):
            await ws.send(json.dumps({"type": "subscribe", "timeframes": timeframes}))
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
        # Minute 0's 1m bar and the first 5m bar become final; 1m rows flow to who wants them.
        await publish_until_acked(bars.address, [_batch(symbol, 1, [5, 30, 65, 6 * 60 + 1])])
        await _rows_until(ws_both, both, "1m", start_s)
        await _rows_until(ws_both, both, "5m", start_s)
        # A later batch finalises the second 5m bar: its row comes after every row of the
        # first batch on the one upstream stream, so any 1m row sent to ws_five came before.
        await publish_until_acked(bars.address, [_batch(symbol, 2, [11 * 60 + 1])])
        await _rows_until(ws_five, five, "5m", start_s + 300)
    instrument = f"simulator:{symbol}"
    assert [(r["instrument"], r["timeframe"], r["indicators"]["time"]) for r in five] == [
        (instrument, "5m", start_s),
        (instrument, "5m", start_s + 300),
    ]
    assert {r["timeframe"] for r in both} == {"1m", "5m"}
    assert all("traceparent" not in r for r in both + five)  # tracing is off
