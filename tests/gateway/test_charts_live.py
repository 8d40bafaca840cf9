"""Charts, features and quality through a real gateway on a real bar and analytics service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from grpc import aio

from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from ..ingest_helpers import capture_batches, fixtures_root, publish
from ..mesh_processes import ServiceProcess
from .processes import ADMIN, GatewayProcess, bars_analytics_gateway, login

CAPTURE = "BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"
CATCH_UP_SECONDS = 30.0
INSTRUMENT = "binance_usdm:BTCUSDT"


@pytest.fixture
async def mesh(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, GatewayProcess]]:
    """A bar service, an analytics service on it, and a gateway on both."""
    async with bars_analytics_gateway(
        fresh_database_url, fresh_redis_url, tmp_path / "gateway.log"
    ) as running:
        yield running.bars, running.gateway


async def _grpc_bars(address: str) -> list[market_pb2.Bar]:
    """What BarService.GetBars answers for USD-M BTCUSDT 1m, the gateway's default limit."""
    instrument = market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="BTCUSDT")
    async with aio.insecure_channel(address) as channel:
        reply = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=instrument, timeframe=market_pb2.TIMEFRAME_1M, limit=500
            )
        )
    return list(reply.bars)


async def _poll(client: httpx.AsyncClient, path: str, ready: str) -> dict[str, Any]:
    """GET `path` until it answers 200 with a non-empty `ready` field, within CATCH_UP_SECONDS."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        reply = await client.get(path)
        if reply.status_code == 200 and reply.json().get(ready):
            return dict(reply.json())
        assert reply.status_code in (200, 404), reply.text
        assert time.monotonic() < deadline, f"{path} still {reply.status_code}: {reply.text}"
        await asyncio.sleep(0.2)


async def test_chart_features_and_quality_of_a_real_capture(
    mesh: tuple[ServiceProcess, GatewayProcess],
) -> None:
    bars, gateway = mesh
    path = fixtures_root() / "binance_futures_um" / CAPTURE
    batches = capture_batches(path, market_pb2.EXCHANGE_BINANCE_USDM, "charts-live")
    assert await publish(bars.address, batches) == batches[-1].sequence
    # The capture spans 23:58 to 00:06: at least six full minutes become final bars.
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while len(expected := await _grpc_bars(bars.address)) < 6:
        assert time.monotonic() < deadline, f"only {len(expected)} final bars"
        await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        client.headers.update(await login(client, *ADMIN))
        chart = (
            await client.get(f"/api/v1/charts/{INSTRUMENT}", params={"timeframe": "1m"})
        ).json()
        assert chart["instrument"] == INSTRUMENT
        assert chart["timeframe"] == "1m"
        assert len(chart["bars"]) == len(expected)
        for got, bar in zip(chart["bars"], expected, strict=True):
            assert got["time"] == bar.open_time_ns // 1_000_000_000
            assert (got["open"], got["high"], got["low"], got["close"]) == (
                bar.open,
                bar.high,
                bar.low,
                bar.close,
            )
            # The bar service's exact strings, untouched (no float on the way).
            assert (got["volume"], got["quote_volume"], got["trade_count"]) == (
                bar.volume,
                bar.quote_volume,
                bar.trade_count,
            )
            assert (got["taker_buy_volume"], got["taker_buy_quote_volume"]) == (
                bar.taker_buy_volume,
                bar.taker_buy_quote_volume,
            )
            assert got["final"] is True

        features = await _poll(client, f"/api/v1/features/{INSTRUMENT}?timeframe=1m", "rows")
        row = features["rows"][-1]
        assert row["time"] == chart["bars"][-1]["time"]
        assert row["feature_version"]
        assert row["values"]

        quality = await _poll(client, f"/api/v1/quality/{INSTRUMENT}?timeframe=1m", "checks_passed")
        assert quality["instrument"] == INSTRUMENT
        assert 0.0 <= quality["score"] <= 1.0
        assert quality["time"].startswith("2023-04-05")
