"""`tickmesh import --from --to`: Binance's daily files from a local data.binance.vision.

The real client downloads zips built here from the trade captures, verifies them against
their CHECKSUM and imports them into a real bar service (and analytics); the bars must equal
Binance's own klines for the same minutes, or the bars computed from the capture where no
klines exist (spot @trade captures).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tickmesh.collector.binance_csv import CsvKind
from tickmesh.collector.history_import import (
    DayStatus,
    RangeOptions,
    RangeRequest,
    import_range,
)
from tickmesh.collector.importer import import_files
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
from ..mesh_processes import ServiceProcess
from .harness import MINUTE_NS, capture_minutes
from .vision_server import (
    FUTURES_HEADER,
    agg_trade_rows,
    capture_trade_rows,
    publish_day,
    spot_file,
    usdm_file,
    vision_server,
)

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
ETH_CAPTURE = "binance_spot/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"
BTC_USDM_CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2024-07-18T2357_to_2024-07-19T0005.txt"
BTC_USDM_KLINES = "binance_futures_um/BTCUSDT-1m-2024-07-18_2350_to_2024-07-19_0010.csv"
XRPETH = "binance_spot/freqtrade_XRPETH/"
AUG_8, AUG_9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)


@pytest.fixture
async def bars(fresh_database_url: str, fresh_redis_url: str) -> AsyncIterator[ServiceProcess]:
    """A running bar service on its own empty database."""
    process = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
        },
    )
    await process.start()
    yield process
    await process.kill()


def _options(tmp_path: Path, base_url: str, **overrides: object) -> RangeOptions:
    values: dict[str, object] = {
        "base_url": base_url,
        "attempts": 2,
        "backoff_max_s": 0.1,
        "chunk_rows": 1000,
        "show_progress": False,
    }
    values.update(overrides)
    return RangeOptions(tmp_path / "state", **values)  # type: ignore[arg-type]


async def _bars(
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


async def _until_equal(read: object, expected: dict[int, tuple[object, ...]]) -> None:
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


def _exact(bar: market_pb2.Bar) -> tuple[object, ...]:
    return (
        *(Decimal(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume)),
        Decimal(bar.quote_volume),
        bar.trade_count,
        Decimal(bar.taker_buy_volume),
    )


def _usdm_klines() -> dict[int, tuple[object, ...]]:
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


def _xrpeth_klines() -> dict[int, tuple[float, ...]]:
    """Binance's 1m klines (OHLCV) of XRPETH up to its last full minute in the trades."""
    rows = json.loads((fixtures_root() / XRPETH / "XRP_ETH-1m.json").read_text())
    return {int(r[0]) * 1_000_000: tuple(map(float, r[1:6])) for r in rows[:-1]}


async def test_range_import_builds_binance_klines_and_analytics(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", common | {"TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    await bars.start()
    analytics = ServiceProcess(
        "analytics",
        common
        | {
            "TICKMESH_BARS_ADDRESSES": bars.address,
            "TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20",
        },
    )
    root = tmp_path / "vision"
    # USD-M: the header form, millisecond times, two days across midnight.
    for day, rows in capture_trade_rows(fixtures_root() / BTC_USDM_CAPTURE, False).items():
        publish_day(root, usdm_file("BTCUSDT", day), "\n".join([FUTURES_HEADER, *rows]) + "\n")
    # Spot aggTrades: three days of XRPETH, the only spot trades with Binance's klines.
    for day, rows in agg_trade_rows(fixtures_root() / XRPETH / _agg_csv()).items():
        publish_day(root, spot_file("XRPETH", day, CsvKind.AGG_TRADES), "\n".join(rows) + "\n")
    try:
        await analytics.start()
        with vision_server(root) as (base_url, _):
            options = _options(tmp_path, base_url)
            usdm = RangeRequest("usdm", "BTCUSDT", dt.date(2024, 7, 18), dt.date(2024, 7, 19))
            xrp = RangeRequest(
                "spot", "XRPETH", dt.date(2019, 10, 11), dt.date(2019, 10, 13), CsvKind.AGG_TRADES
            )
            for request in (usdm, xrp):
                days = await import_range(request, bars.address, options)
                assert [d.status for d in days] == [DayStatus.IMPORTED] * len(days)
        klines = _usdm_klines()
        start, end = min(klines), max(klines) + MINUTE_NS

        async def usdm_bars() -> dict[int, tuple[object, ...]]:
            found = await _bars(bars.address, USDM, "BTCUSDT", start, end)
            return {minute: _exact(bar) for minute, bar in found.items()}

        await _until_equal(usdm_bars, klines)
        xrp_klines = _xrpeth_klines()
        xrp_start, xrp_end = min(xrp_klines), max(xrp_klines) + MINUTE_NS

        async def xrp_bars() -> dict[int, tuple[float, ...]]:
            found = await _bars(bars.address, SPOT, "XRPETH", xrp_start, xrp_end)
            return {
                minute: tuple(float(v) for v in (b.open, b.high, b.low, b.close, b.volume))
                for minute, b in found.items()
            }

        await _until_equal(xrp_bars, xrp_klines)  # type: ignore[arg-type]
        # Indicators and features of every imported 1m bar, computed in time order.
        await _until_analysed(analytics.address, USDM, "BTCUSDT", set(klines))
        await _until_analysed(analytics.address, SPOT, "XRPETH", set(xrp_klines))
        assert await bars.metric("tickmesh_bars_trades_total", 'outcome="too_late"') == 0
    finally:
        await analytics.kill()
        await bars.kill()


def _agg_csv() -> str:
    return "XRPETH-aggTrades-2019-10-11_to_2019-10-13.derived.csv"


async def _analysed(
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


async def _until_analysed(address: str, exchange: int, symbol: str, minutes: set[int]) -> None:
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
                    have |= await _analysed(address, instrument, page, page + 500 * MINUTE_NS)
                missing = sorted(minutes - have)
                if missing:
                    await asyncio.sleep(0.3)
    assert missing[:5] == [], f"{symbol}: {len(missing)} minutes without indicators/features"


def _eth_days(root: Path) -> dict[dt.date, list[str]]:
    """Publish the spot ETHUSDT capture as two days of trades files (microsecond times)."""
    days = capture_trade_rows(fixtures_root() / ETH_CAPTURE, True)
    for day, rows in days.items():
        publish_day(root, spot_file("ETHUSDT", day), "\n".join(rows) + "\n")
    return days


async def _until_capture_bars(address: str, minutes: list[int]) -> None:
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
        found = await _bars(address, SPOT, "ETHUSDT", min(minutes), max(minutes) + MINUTE_NS)
        return {m: (*_exact(b)[:5], b.trade_count) for m, b in found.items()}

    await _until_equal(read, want)  # type: ignore[arg-type]


# Whole minutes of the ETHUSDT capture: 23:55 .. 23:59 on Aug 8, 00:00 .. 00:04 on Aug 9.
ETH_MINUTES = [(1_723_161_300 + 60 * i) * 1_000_000_000 for i in range(10)]


async def test_range_import_resumes_after_interruption_without_loss_or_doubling(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    root = tmp_path / "vision"
    days = _eth_days(root)
    total = sum(len(rows) for rows in days.values())
    first_day = len(days[AUG_8])
    request = RangeRequest("spot", "ETHUSDT", AUG_8, AUG_9)
    with vision_server(root) as (base_url, requests):
        # Stopped part-way through the second day, as an interrupted run would be.
        cut = first_day + 2000
        first = await import_range(
            request, bars.address, _options(tmp_path, base_url, max_trades=cut)
        )
        assert [d.status for d in first] == [DayStatus.IMPORTED, DayStatus.IMPORTED]
        assert first[1].file is not None
        assert first[1].file.submitted == 2000
        fetched = len(requests)
        second = await import_range(request, bars.address, _options(tmp_path, base_url))
        assert second[0].status is DayStatus.ALREADY_DONE
        assert second[1].file is not None
        assert (second[1].file.skipped, second[1].file.submitted) == (2000, total - cut)
        assert len(requests) == fetched  # both days came from the cache
        third = await import_range(request, bars.address, _options(tmp_path, base_url))
        assert [d.status for d in third] == [DayStatus.ALREADY_DONE] * 2
    await _until_capture_bars(bars.address, ETH_MINUTES)
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == total
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="duplicate"') == 0


async def test_range_import_reports_bad_checksum_missing_day_and_malformed_row(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    root = tmp_path / "vision"
    days = capture_trade_rows(fixtures_root() / ETH_CAPTURE, True)
    good_day = days[AUG_8]
    # One malformed row (a price that is no number) in the first day.
    bad = good_day[100].split(",")
    good_day[100] = ",".join([bad[0], "12.3.4", *bad[2:]])
    publish_day(root, spot_file("ETHUSDT", AUG_8), "\n".join(good_day) + "\n")
    publish_day(root, spot_file("ETHUSDT", AUG_9), "\n".join(days[AUG_9]) + "\n", "0" * 64)
    # No file at all for Aug 10: the server answers 404.
    request = RangeRequest("spot", "ETHUSDT", AUG_8, dt.date(2024, 8, 10))
    with vision_server(root) as (base_url, _):
        result = await import_range(request, bars.address, _options(tmp_path, base_url))
    statuses = [d.status for d in result]
    assert statuses == [DayStatus.IMPORTED, DayStatus.FAILED, DayStatus.MISSING]
    imported = result[0].file
    assert imported is not None
    assert (imported.submitted, len(imported.refused)) == (len(good_day) - 1, 1)
    assert "price" in imported.refused[0]
    assert "does not match its CHECKSUM" in (result[1].error or "")
    assert "404" in (result[2].error or "")
    # A file that failed its checksum is not kept: the next run downloads it again.
    assert not (tmp_path / "state" / "binance-vision" / spot_file("ETHUSDT", AUG_9).path).exists()
    refused_minute = int(bad[4]) * 1000 // MINUTE_NS * MINUTE_NS
    # 23:59 is the last minute sent: only the wall clock finalises it, after a minute.
    whole = [m for m in ETH_MINUTES[:4] if m != refused_minute]
    await _until_capture_bars(bars.address, whole)
    accepted = await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"')
    assert accepted == len(good_day) - 1


async def test_range_import_of_last_month_for_a_live_symbol_builds_history_exactly(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", common | {"TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    await bars.start()
    analytics = ServiceProcess(
        "analytics",
        common
        | {"TICKMESH_BARS_ADDRESSES": bars.address, "TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20"},
    )
    try:
        await analytics.start()
        # ETHUSDT is live: trades of this very minute reach the bar service first.
        now_ms = time.time_ns() // 1_000_000
        live = tmp_path / "ETHUSDT-trades-live.csv"
        live_rows = [f"{9_000_000_000 + i},2500.00,0.1,250.0,{now_ms + i},false" for i in range(3)]
        live.write_text("\n".join(live_rows) + "\n")
        await import_files(
            [live], bars.address, state_path=tmp_path / "live.json", show_progress=False
        )
        root = tmp_path / "vision"
        days = _eth_days(root)
        with vision_server(root) as (base_url, _):
            result = await import_range(
                RangeRequest("spot", "ETHUSDT", AUG_8, AUG_9),
                bars.address,
                _options(tmp_path, base_url),
            )
        assert [d.status for d in result] == [DayStatus.IMPORTED] * 2
        await _until_capture_bars(bars.address, ETH_MINUTES)
        await _until_analysed(analytics.address, SPOT, "ETHUSDT", set(ETH_MINUTES))
        total = sum(len(rows) for rows in days.values()) + len(live_rows)
        assert await bars.metric("tickmesh_bars_trades_total", 'outcome="too_late"') == 0
        assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == total
    finally:
        await analytics.kill()
        await bars.kill()


def _synthetic_day(day: dt.date, minutes: int, first_id: int) -> list[str]:
    """Spot trades (microsecond times), three a minute from midnight, closes cycling 100..106."""
    midnight_us = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**6
    rows = []
    for i in range(minutes * 3):
        price = f"{100 + i % 7}.00"
        rows.append(
            f"{first_id + i},{price},0.5,{Decimal(price) / 2},{midnight_us + i * 20 * 10**6},false,True"
        )
    return rows


# 1440: the whole later day, more bars than analytics keeps; 100: a short stream that has
# dropped none (history bars precede all of it and must not rewind it either).
@pytest.mark.parametrize("later_minutes", [1440, 100])
async def test_history_import_after_later_days_leaves_the_later_indicators_alone(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path, later_minutes: int
) -> None:
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", common | {"TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    await bars.start()
    analytics = ServiceProcess(
        "analytics",
        common
        | {"TICKMESH_BARS_ADDRESSES": bars.address, "TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20"},
    )
    root = tmp_path / "vision"
    _eth_days(root)
    later, next_day = dt.date(2024, 8, 20), dt.date(2024, 8, 21)
    later_rows = _synthetic_day(later, later_minutes, 5_000_000_000)
    next_rows = _synthetic_day(next_day, 30, 6_000_000_000)
    later_end = int(later_rows[-1].split(",")[4]) * 1000 // MINUTE_NS * MINUTE_NS
    publish_day(root, spot_file("ETHUSDT", later), "\n".join(later_rows) + "\n")
    publish_day(root, spot_file("ETHUSDT", next_day), "\n".join(next_rows) + "\n")
    try:
        await analytics.start()
        with vision_server(root) as (base_url, _):
            options = _options(tmp_path, base_url)
            # All of Aug 20 first: more 1m bars than analytics keeps per stream.
            for start, end in ((later, later), (AUG_8, AUG_9), (next_day, next_day)):
                request = RangeRequest("spot", "ETHUSDT", start, end)
                days = await import_range(request, bars.address, options)
                assert [d.status for d in days] == [DayStatus.IMPORTED] * len(days)
                if start == later:
                    # Analysed up to its last minute but one (the last waits for the clock) first.
                    await _until_analysed(
                        analytics.address, SPOT, "ETHUSDT", {later_end - MINUTE_NS}
                    )
        await _until_capture_bars(bars.address, ETH_MINUTES)
        await _until_analysed(analytics.address, SPOT, "ETHUSDT", set(ETH_MINUTES))
        # The first minute of Aug 21 follows Aug 20's last minutes, not Aug 9's.
        first = int(dt.datetime(2024, 8, 21, tzinfo=dt.UTC).timestamp()) * 10**9
        await _until_analysed(analytics.address, SPOT, "ETHUSDT", {first})
        # The 19 minutes before midnight: their own close, or the last close (a flat bar).
        last = later_minutes - 1
        closes = [float(later_rows[3 * min(m, last) + 2].split(",")[1]) for m in range(1421, 1440)]
        closes.append(float(next_rows[2].split(",")[1]))
        async with dial(analytics.address) as channel:
            response = await analytics_service_pb2_grpc.AnalyticsServiceStub(channel).GetIndicators(
                analytics_service_pb2.GetIndicatorsRequest(
                    instrument=InstrumentId(SPOT, "ETHUSDT").to_proto(),
                    timeframe=market_pb2.TIMEFRAME_1M,
                    start_time_ns=first,
                    end_time_ns=first + MINUTE_NS,
                )
            )
        assert response.rows[0].sma_20 == pytest.approx(sum(closes) / 20)
        # Aug 8 and 9 went to the bar service's history lane and analytics' history streams.
        assert await analytics.metric("tickmesh_analytics_warmups_total", 'reason="history"') >= 1
        assert await bars.metric("tickmesh_bars_trades_total", 'outcome="too_late"') == 0
    finally:
        await analytics.kill()
        await bars.kill()


async def test_history_lane_survives_a_bar_service_kill_mid_backfill(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    # ETHUSDT is live, so Aug 8 and 9 go to the history lane.
    now_ms = time.time_ns() // 1_000_000
    live = tmp_path / "ETHUSDT-trades-live.csv"
    live.write_text(f"9000000000,2500.00,0.1,250.0,{now_ms},false\n")
    await import_files([live], bars.address, state_path=tmp_path / "live.json", show_progress=False)
    root = tmp_path / "vision"
    days = _eth_days(root)
    total = sum(len(rows) for rows in days.values())
    request = RangeRequest("spot", "ETHUSDT", AUG_8, AUG_9)
    with vision_server(root) as (base_url, _):
        cut = 4000
        first = await import_range(
            request, bars.address, _options(tmp_path, base_url, max_trades=cut)
        )
        assert first[0].file is not None
        assert first[0].file.acknowledged == cut
        # SIGKILL: the lane's open minute holds acknowledged trades; its head must be durable.
        await bars.kill()
        await bars.start()
        second = await import_range(request, bars.address, _options(tmp_path, base_url))
        assert second[0].file is not None
        assert second[0].file.skipped == cut
    await _until_capture_bars(bars.address, ETH_MINUTES)
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == total - cut
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="too_late"') == 0


async def test_import_command_range_prints_each_days_fate(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    root = tmp_path / "vision"
    for day, rows in capture_trade_rows(fixtures_root() / BTC_USDM_CAPTURE, False).items():
        publish_day(root, usdm_file("BTCUSDT", day), "\n".join([FUTURES_HEADER, *rows]) + "\n")
    with vision_server(root) as (base_url, _):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tickmesh.mesh.cli",
            "import",
            "--exchange",
            "usdm",
            "--symbol",
            "btcusdt",
            "--from",
            "2024-07-18",
            "--to",
            "2024-07-20",
            "--no-progress",
            env={
                **os.environ,
                "TICKMESH_BARS_ADDRESS": bars.address,
                "TICKMESH_BINANCE_VISION_URL": base_url,
                "TICKMESH_STATE_DIR": str(tmp_path / "state"),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = output.decode(errors="replace")
    # A missing day alone is no failure: the command succeeds and says which day it was.
    assert process.returncode == 0, text
    assert "BTCUSDT (usdm) 2024-07-18..2024-07-20: 2 imported, 1 missing" in text
    assert "2024-07-20: missing:" in text
    assert "acknowledged by the bar service: 10,701" not in text  # per day, not in total
    assert text.count("acknowledged by the bar service:") == 2
    assert (
        tmp_path / "state" / "binance-vision" / usdm_file("BTCUSDT", AUG_8).path
    ).parent.exists()


async def _run_import_command(
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


async def test_import_command_killed_mid_day_resumes_without_loss_or_doubling(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    day = dt.date(2024, 1, 2)
    # 200,000 trades, one every 0.3 s from midnight: long enough to be killed part-way.
    midnight_us = 1_704_153_600_000_000
    big = [
        f"{i + 1},{100 + i % 7}.00,0.5,50.0,{midnight_us + i * 300_000},false,True"
        for i in range(200_000)
    ]
    publish_day(tmp_path / "vision", spot_file("KILLUSDT", day), "\n".join(big) + "\n")
    state_dir = tmp_path / "state"
    arguments = ["--symbol", "KILLUSDT", "--from", "2024-01-02"]
    with vision_server(tmp_path / "vision") as (base_url, _):
        environment = {
            "TICKMESH_BARS_ADDRESS": bars.address,
            "TICKMESH_BINANCE_VISION_URL": base_url,
            "TICKMESH_STATE_DIR": str(state_dir),
        }
        first = await _run_import_command(arguments, environment)
        # SIGKILL once some of the day is acknowledged and recorded, long before the end.
        progress: dict[str, object] = {}
        async with asyncio.timeout(60):
            while not progress or progress.get("last_id") is None:
                await asyncio.sleep(0.05)
                with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                    files = json.loads((state_dir / "import-state.json").read_text())["files"]
                    progress = next(iter(files.values()), {})
        first.kill()
        await first.wait()
        assert progress.get("done") is False
        second = await _run_import_command(arguments, environment)
        output, _ = await asyncio.wait_for(second.communicate(), timeout=180)
        assert second.returncode == 0, output.decode(errors="replace")
    # Every trade accepted exactly once: trades acknowledged after the last saved state were
    # sent again and dropped by trade id.
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == len(big)
    assert 0 < int(str(progress["last_id"])) < len(big)
