"""Helpers of the range import tests: reading bars and analytics back, the days served."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

from tickmesh.collector.history_import import RangeOptions
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import (
    analytics_service_pb2,
    analytics_service_pb2_grpc,
    bar_service_pb2,
    bar_service_pb2_grpc,
    market_pb2,
)

from ..grpc_helpers import dial
from ..ingest_helpers import fixtures_root
from .harness import MINUTE_NS, capture_minutes
from .vision_server import capture_trade_rows, publish_day, spot_file

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
ETH_CAPTURE = "binance_spot/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"
BTC_USDM_CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2024-07-18T2357_to_2024-07-19T0005.txt"
BTC_USDM_KLINES = "binance_futures_um/BTCUSDT-1m-2024-07-18_2350_to_2024-07-19_0010.csv"
XRPETH = "binance_spot/freqtrade_XRPETH/"
AUG_8, AUG_9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)


def range_options(tmp_path: Path, base_url: str, **overrides: object) -> RangeOptions:
    values: dict[str, object] = {
        "base_url": base_url,
        "attempts": 2,
        "backoff_max_s": 0.1,
        "chunk_rows": 1000,
        "show_progress": False,
    }
    values.update(overrides)
    return RangeOptions(tmp_path / "state", **values)  # type: ignore[arg-type]


async def final_minute_bars(
    address: str, exchange: int, symbol: str, start_ns: int, end_ns: int
) -> dict[int, market_pb2.Bar]:
    async with dial(address) as channel:
        response = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=InstrumentId(exchange, symbol).to_proto(),
                timeframe=market_pb2.TIMEFRAME_1M,
                start_time_ns=start_ns,
                end_time_ns=end_ns,
                limit=5000,
            )
        )
    return {bar.open_time_ns: bar for bar in response.bars if bar.final}


async def until_equal(read: object, expected: dict[int, tuple[object, ...]]) -> None:
    """Poll `read()` (open time -> tuple) until it equals `expected` on its keys (30 s)."""
    wrong: list[str] = ["not read yet"]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while wrong:
                got = await read()  # type: ignore[operator]
                wrong = [
                    f"{minute}: {got.get(minute)} != {want}"
                    for minute, want in expected.items()
                    if got.get(minute) != want
                ]
                if wrong:
                    await asyncio.sleep(0.2)
    assert wrong[:5] == []


def exact(bar: market_pb2.Bar) -> tuple[object, ...]:
    return (
        *(Decimal(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume)),
        Decimal(bar.quote_volume),
        bar.trade_count,
        Decimal(bar.taker_buy_volume),
    )


def usdm_klines() -> dict[int, tuple[object, ...]]:
    """Binance's 1m klines of the minutes the futures capture covers in full."""
    lines = (fixtures_root() / BTC_USDM_KLINES).read_text().splitlines()[1:]
    klines = {}
    for line in lines:
        f = line.split(",")
        minute = int(f[0]) * 1_000_000
        # The capture runs 23:57:02 .. 00:05:02: the minutes 23:58 .. 00:04 are whole.
        if 1_721_347_080_000_000_000 <= minute <= 1_721_347_440_000_000_000:
            values = (f[1], f[2], f[3], f[4], f[5], f[7])
            klines[minute] = (*map(Decimal, values), int(f[8]), Decimal(f[9]))
    assert len(klines) == 7
    return klines


def xrpeth_klines() -> dict[int, tuple[float, ...]]:
    """Binance's 1m klines (OHLCV) of XRPETH up to its last full minute in the trades."""
    rows = json.loads((fixtures_root() / XRPETH / "XRP_ETH-1m.json").read_text())
    return {int(r[0]) * 1_000_000: tuple(map(float, r[1:6])) for r in rows[:-1]}


def agg_csv() -> str:
    return "XRPETH-aggTrades-2019-10-11_to_2019-10-13.derived.csv"


async def analysed(
    address: str, instrument: market_pb2.Instrument, start_ns: int, end_ns: int
) -> set[int]:
    """Open times of [start, end) that have both an indicator row and a feature row."""
    one_minute = market_pb2.TIMEFRAME_1M
    async with dial(address) as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        indicators = await stub.GetIndicators(
            analytics_service_pb2.GetIndicatorsRequest(
                instrument=instrument,
                timeframe=one_minute,
                start_time_ns=start_ns,
                end_time_ns=end_ns,
                limit=5000,
            )
        )
        features = await stub.GetFeatures(
            analytics_service_pb2.GetFeaturesRequest(
                instrument=instrument,
                timeframe=one_minute,
                start_time_ns=start_ns,
                end_time_ns=end_ns,
                limit=5000,
            )
        )
    return {r.open_time_ns for r in indicators.rows} & {r.open_time_ns for r in features.rows}


async def until_analysed(address: str, exchange: int, symbol: str, minutes: set[int]) -> None:
    """Wait until GetIndicators and GetFeatures hold a row for each of `minutes` (60 s)."""
    instrument = InstrumentId(exchange, symbol).to_proto()
    # Pages of 500 minutes: 3,500 feature rows would pass gRPC's 4 MB message limit.
    pages = sorted(minutes)[::500]
    missing: list[int] = [-1]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(60):
            while missing:
                have: set[int] = set()
                for page in pages:
                    have |= await analysed(address, instrument, page, page + 500 * MINUTE_NS)
                missing = sorted(minutes - have)
                if missing:
                    await asyncio.sleep(0.3)
    assert missing[:5] == [], f"{symbol}: {len(missing)} minutes without indicators/features"


def eth_days(root: Path) -> dict[dt.date, list[str]]:
    """Publish the spot ETHUSDT capture as two days of trades files (microsecond times)."""
    days = capture_trade_rows(fixtures_root() / ETH_CAPTURE, True)
    for day, rows in days.items():
        publish_day(root, spot_file("ETHUSDT", day), "\n".join(rows) + "\n")
    return days


async def until_capture_bars(address: str, minutes: list[int]) -> None:
    expected, _ = capture_minutes(fixtures_root() / ETH_CAPTURE)
    want = {
        m: (
            expected[m].open,
            expected[m].high,
            expected[m].low,
            expected[m].close,
            expected[m].volume,
            expected[m].count,
        )
        for m in minutes
    }

    async def read() -> dict[int, tuple[object, ...]]:
        found = await final_minute_bars(
            address, SPOT, "ETHUSDT", min(minutes), max(minutes) + MINUTE_NS
        )
        return {m: (*exact(b)[:5], b.trade_count) for m, b in found.items()}

    await until_equal(read, want)  # type: ignore[arg-type]


# Whole minutes of the ETHUSDT capture: 23:55 .. 23:59 on Aug 8, 00:00 .. 00:04 on Aug 9.
ETH_MINUTES = [(1_723_161_300 + 60 * i) * 1_000_000_000 for i in range(10)]


def synthetic_day(day: dt.date, minutes: int, first_id: int) -> list[str]:
    """Spot trades (microsecond times), three a minute from midnight, closes cycling 100..106."""
    midnight_us = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**6
    rows = []
    for i in range(minutes * 3):
        price = f"{100 + i % 7}.00"
        rows.append(
            f"{first_id + i},{price},0.5,{Decimal(price) / 2},{midnight_us + i * 20 * 10**6},false,True"
        )
    return rows


async def run_import_command(
    arguments: list[str], environment: dict[str, str]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickmesh.mesh.cli",
        "import",
        *arguments,
        "--no-progress",
        env={**os.environ, **environment},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
