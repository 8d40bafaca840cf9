"""BTCUSDT on Binance spot and on USD-M, side by side through the whole mesh, each exact.

The exchange simulator replays the spot and the USD-M BTCUSDT captures of 2024-08-08 at
once over Binance's WebSocket protocols; a real collector, bar service, analytics service
and gateway carry them. Each instrument's bars must equal its own truth, field for field
and with no tolerance: the USD-M minutes equal Binance's own klines (all nine kline fields,
compared as decimals), the spot minutes equal bars computed here with `decimal.Decimal`
straight from the capture's JSON. Both are served side by side over gRPC (GetBars),
REST (charts) and the WebSocket, and analytics keeps their indicators apart.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig, SourceSpec
from tickmesh.core.fixtures import fixtures_root
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import (
    analytics_service_pb2,
    analytics_service_pb2_grpc,
    bar_service_pb2,
    bar_service_pb2_grpc,
    market_pb2,
    symbol_service_pb2,
    symbol_service_pb2_grpc,
)

from .chaos_mesh import Mesh, build_mesh
from .gateway.processes import ADMIN
from .mesh_processes import ServiceProcess
from .tls_helpers import TestPki

SPOT_CAPTURE = "binance_spot/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"
USDM_CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt"
USDM_KLINES = "binance_futures_um/BTCUSDT-1m-2024-08-08_2350_to_2024-08-09_0010.csv"
SPOT = InstrumentId.parse("binance_spot:BTCUSDT")
USDM = InstrumentId.parse("binance_usdm:BTCUSDT")
MINUTE_MS = 60_000
NS_PER_MS = 1_000_000
# Full minutes (epoch ms) of each capture (fixtures README 1a and 1c).
USDM_MINUTES = [1_723_161_300_000 + MINUTE_MS * i for i in range(5)]
SPOT_MINUTES = [1_723_161_300_000 + MINUTE_MS * i for i in range(10)]
FIELDS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
WITHIN_SECONDS = 90


@dataclass
class _Minute:
    """A bar computed with exact decimals: open and close by (trade time, trade id)."""

    first: tuple[int, int]
    last: tuple[int, int]
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    quote_volume: Decimal = Decimal(0)
    trade_count: int = 0
    taker_buy_volume: Decimal = Decimal(0)
    taker_buy_quote_volume: Decimal = Decimal(0)

    def values(self) -> tuple[Decimal | int, ...]:
        """The nine kline fields in FIELDS order."""
        return tuple(getattr(self, name) for name in FIELDS)


def capture_truth(path: Path) -> dict[int, tuple[Decimal | int, ...]]:
    """Minute bars of a "<ts> <json>" trade capture, by open time in ms (market trades only)."""
    minutes: dict[int, _Minute] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            data = json.loads(line.partition(" ")[2])["data"]
            if data.get("X", "MARKET") != "MARKET":
                continue
            key = (int(data["T"]), int(data["t"]))
            price, quantity = Decimal(data["p"]), Decimal(data["q"])
            minute = minutes.setdefault(
                key[0] // MINUTE_MS * MINUTE_MS, _Minute(key, key, price, price, price, price)
            )
            if key < minute.first:
                minute.first, minute.open = key, price
            if key > minute.last:
                minute.last, minute.close = key, price
            minute.high, minute.low = max(minute.high, price), min(minute.low, price)
            minute.volume += quantity
            minute.quote_volume += price * quantity
            minute.trade_count += 1
            if not data["m"]:  # the buyer was the taker
                minute.taker_buy_volume += quantity
                minute.taker_buy_quote_volume += price * quantity
    return {open_ms: minute.values() for open_ms, minute in minutes.items()}


def kline_truth(path: Path) -> dict[int, tuple[Decimal | int, ...]]:
    """Binance's own 1m klines, by open time in ms, as exact decimals."""
    with path.open(newline="") as handle:
        return {
            int(row["open_time"]): (
                Decimal(row["open"]),
                Decimal(row["high"]),
                Decimal(row["low"]),
                Decimal(row["close"]),
                Decimal(row["volume"]),
                Decimal(row["quote_volume"]),
                int(row["count"]),
                Decimal(row["taker_buy_volume"]),
                Decimal(row["taker_buy_quote_volume"]),
            )
            for row in csv.DictReader(handle)
        }


def _exact(bar: Any) -> tuple[Decimal | int, ...]:
    """A served bar's nine kline fields (a proto Bar or a JSON object) as decimals."""
    values = [bar[name] if isinstance(bar, dict) else getattr(bar, name) for name in FIELDS]
    return tuple(
        int(value) if name == "trade_count" else Decimal(str(value))
        for name, value in zip(FIELDS, values, strict=True)
    )


@dataclass
class _Replay:
    """The running mesh and the simulator holding both captures."""

    mesh: Mesh
    simulator: ExchangeSimulator


@pytest.fixture
async def replay(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> AsyncIterator[_Replay]:
    """The four services on the simulator, which holds both captures paused."""
    fixtures = fixtures_root()
    config = SimulatorConfig(
        sources=[SourceSpec(fixtures / SPOT_CAPTURE), SourceSpec(fixtures / USDM_CAPTURE)],
        speed=None,
        paused=True,
    )
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    async with ExchangeSimulator(config) as sim:
        running = build_mesh(common, sim, TestPki(tmp_path))
        try:
            for service in running.services.values():
                await service.start()
            async with running.collector.channel("gateway") as channel:
                registry = symbol_service_pb2_grpc.SymbolServiceStub(channel)
                for instrument in (SPOT, USDM):
                    await registry.AddSymbol(
                        symbol_service_pb2.AddSymbolRequest(
                            symbol=instrument.symbol,
                            exchange=market_pb2.Exchange.ValueType(instrument.exchange),
                            asset_type="crypto",
                        )
                    )
            async with asyncio.timeout(WITHIN_SECONDS):
                while sum(len(c.subscriptions) for c in sim.hub.connections) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            yield _Replay(running, sim)
        finally:
            for service in running.services.values():
                await service.kill()


async def _grpc_bars(bars: ServiceProcess, instrument: InstrumentId) -> dict[int, market_pb2.Bar]:
    async with bars.channel("reader") as channel:
        response = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M, limit=100
            )
        )
    return {bar.open_time_ns // NS_PER_MS: bar for bar in response.bars if bar.final}


async def _settled(
    bars: ServiceProcess, instrument: InstrumentId, minutes: list[int]
) -> dict[int, Any]:
    """The final 1m bars once every full minute is there (the quiet end finalizes late)."""
    async with asyncio.timeout(WITHIN_SECONDS):
        while True:
            found = await _grpc_bars(bars, instrument)
            if all(minute in found for minute in minutes):
                return found
            await asyncio.sleep(0.2)


async def _ws_finals(
    url: str, instrument: InstrumentId, minutes: list[int], into: dict[int, Any]
) -> None:
    """Collect the final 1m bars pushed on /ws/{instrument} until every minute arrived."""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
        while not all(minute in into for minute in minutes):
            message = json.loads(await ws.recv())
            if message.get("type") != "bars" or message.get("timeframe") != "1m":
                continue
            for bar in message["bars"]:
                if bar["final"]:
                    into[bar["time"] * 1000] = bar


async def test_spot_and_usdm_btcusdt_side_by_side_each_equal_its_truth(replay: _Replay) -> None:
    mesh = replay.mesh
    fixtures = fixtures_root()
    truth = {
        USDM: kline_truth(fixtures / USDM_KLINES),
        SPOT: capture_truth(fixtures / SPOT_CAPTURE),
    }
    minutes = {USDM: USDM_MINUTES, SPOT: SPOT_MINUTES}
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url, timeout=10) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]}
        )
        login.raise_for_status()
        token = login.json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        listed = (await client.get("/api/v1/symbols")).json()
        assert {item["instrument"] for item in listed} >= {str(SPOT), str(USDM)}

        ws_base = mesh.gateway.base_url.replace("http://", "ws://")
        pushed: dict[InstrumentId, dict[int, Any]] = {SPOT: {}, USDM: {}}
        watchers = [
            asyncio.create_task(
                _ws_finals(f"{ws_base}/ws/{i}?token={token}", i, minutes[i], pushed[i])
            )
            for i in (SPOT, USDM)
        ]
        await asyncio.sleep(1.0)  # the gateway opens its upstream streams
        replay.simulator.resume()

        for instrument in (SPOT, USDM):
            served = await _settled(mesh.bars, instrument, minutes[instrument])
            wanted = {m: truth[instrument][m] for m in minutes[instrument]}
            assert {m: _exact(served[m]) for m in minutes[instrument]} == wanted, instrument
            reply = await client.get(
                f"/api/v1/charts/{instrument}", params={"timeframe": "1m", "limit": "100"}
            )
            assert reply.status_code == 200, reply.text
            chart = {bar["time"] * 1000: bar for bar in reply.json()["bars"] if bar["final"]}
            assert {m: _exact(chart[m]) for m in minutes[instrument]} == wanted, instrument
            # Plain decimal strings, as the exchange writes them: never a float's tail.
            assert all(isinstance(chart[m]["volume"], str) for m in minutes[instrument])

        async with asyncio.timeout(WITHIN_SECONDS):
            await asyncio.gather(*watchers)
        for instrument in (SPOT, USDM):
            wanted = {m: truth[instrument][m] for m in minutes[instrument]}
            assert {m: _exact(pushed[instrument][m]) for m in minutes[instrument]} == wanted

    # The two venues' prices differ, so their indicators do: analytics keeps them apart.
    async with mesh.analytics.channel("reader") as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        vwaps: dict[InstrumentId, dict[int, float]] = {}
        async with asyncio.timeout(WITHIN_SECONDS):
            for instrument in (SPOT, USDM):
                while True:
                    rows = (
                        await stub.GetIndicators(
                            analytics_service_pb2.GetIndicatorsRequest(
                                instrument=instrument.to_proto(),
                                timeframe=market_pb2.TIMEFRAME_1M,
                                limit=100,
                            )
                        )
                    ).rows
                    assert all(row.exchange == instrument.exchange for row in rows)
                    found = {row.open_time_ns // NS_PER_MS: row.vwap for row in rows}
                    if all(m in found for m in USDM_MINUTES):
                        vwaps[instrument] = found
                        break
                    await asyncio.sleep(0.2)
        assert all(vwaps[SPOT][m] != vwaps[USDM][m] for m in USDM_MINUTES)
