"""Every trade id of real captures reaches a real bar service exactly once, through every fault.

The simulator replays a USD-M BTCUSDT capture and a spot ETHUSDT capture at full speed;
the collector's sources, backfill and ingest client carry them to a `python -m
tickmesh.bars` process. Its final 1m bars must equal Binance's own klines (USD-M) and
the bars computed from the capture (spot) for every full minute: a lost trade or a
double-counted one changes a trade count.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from tickmesh.collector.simulator import (
    ExchangeSimulator,
    FaultConfig,
    SimulatorConfig,
    SimulatorStats,
    SourceSpec,
)
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from ..grpc_helpers import dial
from ..ingest_helpers import fixtures_root
from ..mesh_processes import ServiceProcess
from .harness import MINUTE_NS, NS_PER_MS, SPOT, USDM, CollectorHarness, MinuteBar, capture_minutes

USDM_CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt"
USDM_KLINES = "binance_futures_um/BTCUSDT-1m-2024-08-08_2350_to_2024-08-09_0010.csv"
SPOT_CAPTURE = "binance_spot/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"
# Full minutes (epoch ns): USD-M 23:55..23:59 (README 1a), spot 23:55..00:04.
USDM_MINUTES = [(1_723_161_300 + 60 * i) * 1_000_000_000 for i in range(5)]
SPOT_MINUTES = [(1_723_161_300 + 60 * i) * 1_000_000_000 for i in range(10)]


@pytest.fixture
async def bars(fresh_database_url: str, fresh_redis_url: str) -> AsyncIterator[ServiceProcess]:
    """A bar service on its own empty database."""
    process = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
        },
    )
    yield process
    await process.kill()


def _klines(path: Path) -> dict[int, MinuteBar]:
    with path.open(newline="") as handle:
        return {
            int(row["open_time"]) * NS_PER_MS: MinuteBar(
                Decimal(row["open"]),
                Decimal(row["high"]),
                Decimal(row["low"]),
                Decimal(row["close"]),
                Decimal(row["volume"]),
                int(row["count"]),
                Decimal(row["taker_buy_volume"]),
            )
            for row in csv.DictReader(handle)
        }


async def _final_bars(
    address: str,
    instrument: str,
    minutes: list[int],
    credentials: grpc.ChannelCredentials | None = None,
) -> dict[int, market_pb2.Bar]:
    async with dial(address, credentials) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        response = await stub.GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=InstrumentId.parse(instrument).to_proto(),
                timeframe=market_pb2.TIMEFRAME_1M,
                start_time_ns=minutes[0],
                end_time_ns=minutes[-1] + MINUTE_NS,
                limit=100,
            )
        )
    return {bar.open_time_ns: bar for bar in response.bars if bar.final}


def _mismatches(
    bars: dict[int, market_pb2.Bar], expected: dict[int, MinuteBar], minutes: list[int]
) -> list[str]:
    wrong = []
    for minute in minutes:
        bar, want = bars.get(minute), expected[minute]
        if bar is None:
            wrong.append(f"{minute}: missing")
            continue
        # Exact: the bar's decimal strings equal the reference as decimals, no tolerance.
        prices = (bar.open, bar.high, bar.low, bar.close, bar.volume)
        got = (*(Decimal(text) for text in prices), bar.trade_count)
        wanted = (want.open, want.high, want.low, want.close, want.volume, want.count)
        taker_ok = (
            not bar.HasField("taker_buy_volume")
            or Decimal(bar.taker_buy_volume) == want.taker_buy_volume
        )
        if got != wanted or not taker_ok:
            wrong.append(f"{minute}: {got} {bar.taker_buy_volume} != {want}")
    return wrong


async def _wait_bars(address: str) -> None:
    fixtures = fixtures_root()
    usdm_expected = _klines(fixtures / USDM_KLINES)
    spot_expected, _ = capture_minutes(fixtures / SPOT_CAPTURE)
    wrong: list[str] = ["not read yet"]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            # Late trades (a refilled overflow) arrive as revisions: wait until they are in.
            while wrong:
                usdm = await _final_bars(address, "binance_usdm:BTCUSDT", USDM_MINUTES)
                spot = await _final_bars(address, "binance_spot:ETHUSDT", SPOT_MINUTES)
                wrong = _mismatches(usdm, usdm_expected, USDM_MINUTES)
                wrong += _mismatches(spot, spot_expected, SPOT_MINUTES)
                if wrong:
                    await asyncio.sleep(0.2)
    assert wrong == []


def _simulator(faults: FaultConfig) -> ExchangeSimulator:
    fixtures = fixtures_root()
    return ExchangeSimulator(
        SimulatorConfig(
            sources=[SourceSpec(fixtures / USDM_CAPTURE), SourceSpec(fixtures / SPOT_CAPTURE)],
            speed=None,
            paused=True,
            faults=faults,
        )
    )


def _last_ids() -> dict[tuple[int, str], int]:
    fixtures = fixtures_root()
    return {
        (USDM, "BTCUSDT"): capture_minutes(fixtures / USDM_CAPTURE)[1],
        (SPOT, "ETHUSDT"): capture_minutes(fixtures / SPOT_CAPTURE)[1],
    }


async def _replay(
    bars: ServiceProcess,
    faults: FaultConfig,
    *,
    max_age_s: float = 3600.0,
    buffer_trades: int = 1_000_000,
    kill_bars_after_s: float | None = None,
    start_bars_late: bool = False,
) -> tuple[CollectorHarness, SimulatorStats]:
    if not start_bars_late:
        await bars.start()
    async with _simulator(faults) as sim:
        harness = CollectorHarness(
            sim,
            bars.address,
            f"test-{secrets.token_hex(4)}",
            {USDM: ["BTCUSDT"], SPOT: ["ETHUSDT"]},
            buffer_trades=buffer_trades,
            max_age_s=max_age_s,
        )
        async with harness:
            await harness.wait_subscribed(sim, 2)
            sim.resume()
            if kill_bars_after_s is not None:
                await asyncio.sleep(kill_bars_after_s)
                await bars.kill()
                await asyncio.sleep(0.5)
                await bars.start()
            async with asyncio.timeout(30):
                await sim.wait_replay_done()
            if start_bars_late:
                assert harness.ingest.dropped_trades > 0
                await bars.start()
            await harness.wait_complete(_last_ids(), within_s=60)
    await _wait_bars(bars.address)
    return harness, sim.stats


async def test_collector_clean_run_bars_equal_klines(bars: ServiceProcess) -> None:
    harness, _ = await _replay(bars, FaultConfig())
    assert harness.metrics.gaps_found.labels(source="binance_spot")._value.get() == 0


async def test_collector_ten_dropped_connections_backfilled_exactly_once(
    bars: ServiceProcess,
) -> None:
    harness, stats = await _replay(
        bars, FaultConfig(seed=3, drop_connections=10, drop_within_trades=30_000)
    )
    assert stats.drop_events >= 10
    assert sum(source.reconnects for source in harness.sources.values()) >= 2
    filled = harness.metrics.gap_trades_filled
    assert (
        filled.labels(source="binance_spot")._value.get()
        + filled.labels(source="binance_usdm")._value.get()
        > 0
    )


async def test_collector_duplicates_and_reordering_delivered_once(bars: ServiceProcess) -> None:
    harness, _ = await _replay(bars, FaultConfig(seed=5, duplicate_rate=0.05, reorder_rate=0.05))
    duplicates = harness.metrics.trades.labels(source="binance_usdm", outcome="duplicate")
    assert duplicates._value.get() > 0


async def test_collector_malformed_frames_counted_and_skipped(bars: ServiceProcess) -> None:
    harness, _ = await _replay(bars, FaultConfig(seed=7, malformed_rate=0.02))
    errors = harness.metrics.parse_errors
    total = sum(
        errors.labels(source=source, kind=kind)._value.get()
        for source in ("binance_spot", "binance_usdm")
        for kind in ("bad_json", "missing_field", "wrong_type", "invalid_value", "unknown_stream")
    )
    assert total > 0


async def test_collector_server_lifetime_close_and_rollover_lose_nothing(
    bars: ServiceProcess,
) -> None:
    # The server closes each connection after 0.4 s (Binance: 24 h); the collector rolls
    # over at 0.25 s with an overlap, and a server close it misses is backfilled.
    harness, stats = await _replay(bars, FaultConfig(max_connection_lifetime_s=0.4), max_age_s=0.25)
    assert stats.closed_for_lifetime + sum(s.reconnects for s in harness.sources.values()) >= 2


async def test_collector_bar_service_killed_mid_replay_resends_unacked(
    bars: ServiceProcess,
) -> None:
    harness, _ = await _replay(bars, FaultConfig(), kill_bars_after_s=0.3)
    assert harness.metrics.ingest_reconnects._value.get() >= 1


async def test_collector_buffer_overflow_refilled_from_rest(bars: ServiceProcess) -> None:
    harness, _ = await _replay(bars, FaultConfig(), buffer_trades=5000, start_bars_late=True)
    assert harness.ingest.dropped_trades > 0


# Each USD-M capture with its klines and the full minutes README section 1a verified.
FUTURES_CASES = {
    "2023-04-04": (
        "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt",
        "binance_futures_um/BTCUSDT-1m-2023-04-04_2350_to_2023-04-05_0010.csv",
        [(1_680_652_740 + 60 * i) * 1_000_000_000 for i in range(7)],
    ),
    "2024-07-18": (
        "binance_futures_um/BTCUSDT_ws_trade_2024-07-18T2357_to_2024-07-19T0005.txt",
        "binance_futures_um/BTCUSDT-1m-2024-07-18_2350_to_2024-07-19_0010.csv",
        [(1_721_347_080 + 60 * i) * 1_000_000_000 for i in range(7)],
    ),
    "2024-08-08": (USDM_CAPTURE, USDM_KLINES, USDM_MINUTES),
}


@pytest.mark.parametrize("day", sorted(FUTURES_CASES))
async def test_futures_capture_through_simulator_and_collector_equals_klines(
    bars: ServiceProcess, day: str
) -> None:
    capture, klines_file, minutes = FUTURES_CASES[day]
    fixtures = fixtures_root()
    await bars.start()
    config = SimulatorConfig(sources=[SourceSpec(fixtures / capture)], speed=None, paused=True)
    async with ExchangeSimulator(config) as sim:
        harness = CollectorHarness(
            sim, bars.address, f"futures-{day}", {USDM: ["BTCUSDT"]}, max_age_s=3600.0
        )
        async with harness:
            await harness.wait_subscribed(sim, 1)
            sim.resume()
            async with asyncio.timeout(30):
                await sim.wait_replay_done()
            _, last_id = capture_minutes(fixtures / capture)
            await harness.wait_complete({(USDM, "BTCUSDT"): last_id}, within_s=60)
    expected = _klines(fixtures / klines_file)
    wrong = ["not read yet"]
    for _ in range(100):  # the capture's last full minute waits for the quiet symbol's clock
        built = await _final_bars(bars.address, "binance_usdm:BTCUSDT", minutes)
        wrong = _mismatches(built, expected, minutes)
        if not wrong:
            break
        await asyncio.sleep(0.2)
    assert wrong == []
