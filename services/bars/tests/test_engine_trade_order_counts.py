"""Duplicate and out-of-order trade counts per bar, on real Binance captures with injected faults.

Each capture is replayed with some trades sent twice and some held back and sent later. The
expected counts are derived here by walking the arrival order one trade at a time (the engine
works on whole numpy runs), and the bars must still equal Binance's own klines.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import numpy.typing as npt
import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v2 import market_pb2

from .kline_helpers import FuturesKlines
from .test_engine_binance_futures import EXPECTED_MINUTES, matches

SLICE = 500
LATENESS_NS = EngineConfig().allowed_lateness_ns
T0 = 1_700_006_400 * NS_PER_SECOND  # a day boundary


def inject_faults(size: int, seed: int) -> npt.NDArray[np.intp]:
    """Arrival order of a capture's trades: ~1% held back, ~1% sent a second time a little later."""
    rng = np.random.default_rng(seed)
    # Each arrival gets a rank: its own position, plus a delay for held-back trades and copies.
    ranks = np.arange(size, dtype=np.float64)
    held = rng.choice(size, max(1, size // 100), replace=False)
    # Held up to ~1,000 trades: often only into the next run, often past its minute's finality.
    ranks[held] += rng.integers(1, 1000, held.size) + 0.5
    copied = rng.choice(size, max(1, size // 100), replace=False)
    copy_ranks = copied + rng.integers(0, 600, copied.size) + 0.25
    positions = np.concatenate((np.arange(size), copied))
    return positions[np.argsort(np.concatenate((ranks, copy_ranks)), kind="stable")]


def expected_counts(run: TradeRun) -> tuple[Counter[int], Counter[int]]:
    """Per-minute (duplicates, out-of-order trades), trade by trade in arrival order.

    A duplicate counts while its minute is still forming when its run starts, i.e. not yet
    behind the watermark (latest event time of earlier runs minus the allowed lateness); an
    out-of-order market trade counts in its minute whatever that minute's state.
    """
    duplicates: Counter[int] = Counter()
    out_of_order: Counter[int] = Counter()
    seen: set[int] = set()
    newest: tuple[int, int] | None = None
    watermark: int | None = None
    for start in range(0, len(run), SLICE):
        forming_from = None if watermark is None else watermark - watermark % NS_PER_MINUTE
        latest: int | None = None
        for i in range(start, min(start + SLICE, len(run))):
            trade_id, time_ns = int(run.trade_ids[i]), int(run.event_time_ns[i])
            minute = time_ns - time_ns % NS_PER_MINUTE
            if trade_id in seen:
                if forming_from is None or minute >= forming_from:
                    duplicates[minute] += 1
                continue
            seen.add(trade_id)
            key = (time_ns, trade_id)
            market = run.types is None or int(run.types[i]) <= market_pb2.TRADE_TYPE_MARKET
            if newest is not None and key < newest and market:
                out_of_order[minute] += 1
            newest = key if newest is None else max(newest, key)
            latest = time_ns if latest is None else max(latest, time_ns)
        if latest is not None:
            frontier = latest - LATENESS_NS
            watermark = frontier if watermark is None else max(watermark, frontier)
    return duplicates, out_of_order


def replay(run: TradeRun) -> list[BarUpdate]:
    """Feed a run in slices of SLICE trades, then finalize everything."""
    engine = BarEngine()
    updates: list[BarUpdate] = []
    for start in range(0, len(run), SLICE):
        part = run.take(np.arange(start, min(start + SLICE, len(run))))
        updates += engine.apply_trades(part).updates
    updates += engine.advance(int(run.event_time_ns.max()) + 2 * NS_PER_MINUTE)
    return updates


def latest_finals(updates: list[BarUpdate], label: str) -> dict[int, BarUpdate]:
    """The last final version of each bar of one timeframe, by open time."""
    return {u.open_time_ns: u for u in updates if u.final and u.timeframe.label == label}


@pytest.mark.parametrize("label", list(EXPECTED_MINUTES))
def test_capture_with_injected_faults_counts_them_per_minute_and_keeps_klines(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]], label: str
) -> None:
    run, klines = futures_cases[label]
    faulty = run.take(inject_faults(len(run), seed=len(label) + len(run)))
    duplicates, out_of_order = expected_counts(faulty)
    assert sum(duplicates.values()) > 20
    assert sum(out_of_order.values()) > 20

    updates = replay(faulty)
    minutes = latest_finals(updates, "1m")
    assert {m: bar.duplicate_trades for m, bar in minutes.items() if bar.duplicate_trades} == dict(
        duplicates
    )
    assert {
        m: bar.out_of_order_trades for m, bar in minutes.items() if bar.out_of_order_trades
    } == dict(out_of_order)
    # Some held-back trades arrived after their minute was final: revisions carry their count.
    assert any(bar.revision > 0 and bar.out_of_order_trades for bar in minutes.values())

    first, last, _ = EXPECTED_MINUTES[label]
    for minute in range(first * NS_PER_SECOND, (last + 60) * NS_PER_SECOND, NS_PER_MINUTE):
        assert matches(minutes[minute], klines[minute]), (label, minute)
    clean = latest_finals(replay(run), "1m")
    assert {m: bar.trade_count for m, bar in minutes.items()} == {
        m: bar.trade_count for m, bar in clean.items()
    }
    assert sum(bar.out_of_order_trades for bar in clean.values()) == sum(
        expected_counts(run)[1].values()
    )

    for higher in ("5m", "15m", "1h"):
        for start, bar in latest_finals(updates, higher).items():
            inside = [b for m, b in minutes.items() if start <= m < bar.close_time_ns]
            assert bar.duplicate_trades == sum(b.duplicate_trades for b in inside)
            assert bar.out_of_order_trades == sum(b.out_of_order_trades for b in inside)


def _run(ids: list[int], seconds: list[float]) -> TradeRun:
    times = [T0 + int(s * NS_PER_SECOND) for s in seconds]
    prices = [100 + i for i in range(len(ids))]
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_SPOT, "ETHUSDT", ids, prices, [1] * len(ids), times
    )


def test_duplicate_of_a_final_minute_is_not_counted_and_revises_nothing() -> None:
    engine = BarEngine()
    engine.apply_trades(_run([1, 2], [10, 20]))
    finals = engine.apply_trades(_run([3], [75])).updates  # watermark 73 s: minute 0 is final
    assert [u.timeframe.label for u in finals] == ["1m"]
    result = engine.apply_trades(_run([2, 3], [20, 75]))
    assert (result.duplicates, result.updates) == (2, [])
    (forming,) = [u for u in engine.take_forming_updates() if u.timeframe.label == "1m"]
    assert (forming.open_time_ns, forming.duplicate_trades) == (T0 + NS_PER_MINUTE, 1)


def test_late_trade_counts_out_of_order_in_the_revision_of_its_bar() -> None:
    engine = BarEngine()
    engine.apply_trades(_run([1, 3], [10, 30]))
    engine.apply_trades(_run([4], [75]))
    result = engine.apply_trades(_run([2, 5], [20, 76]))
    (revised,) = [u for u in result.updates if u.timeframe.label == "1m"]
    assert (revised.revision, revised.trade_count, revised.out_of_order_trades) == (1, 3, 1)
    assert (revised.open, revised.close) == (100.0, 101.0)


def test_reordered_run_counts_each_trade_that_came_after_a_later_one() -> None:
    engine = BarEngine()
    # Arrival: 5, 3, 4 (both behind 5), 6, then 1 (behind all of them) and 7.
    engine.apply_trades(_run([5, 3, 4, 6, 1, 7], [5, 3, 4, 6, 1, 7]))
    (minute,) = [u for u in engine.take_forming_updates() if u.timeframe.label == "1m"]
    assert (minute.trade_count, minute.out_of_order_trades, minute.duplicate_trades) == (6, 3, 0)
    # Same time, lower id: out of order too; a resend of the run is six duplicates.
    engine.apply_trades(_run([9, 8], [8, 8]))
    engine.apply_trades(_run([5, 3, 4, 6, 1, 7], [5, 3, 4, 6, 1, 7]))
    (minute,) = [u for u in engine.take_forming_updates() if u.timeframe.label == "1m"]
    assert (minute.out_of_order_trades, minute.duplicate_trades) == (4, 6)


def test_counts_survive_a_snapshot_and_restore_mid_stream() -> None:
    run = _run(list(range(1, 61)), [i * 3.0 for i in range(60)])
    faulty = run.take(inject_faults(len(run), seed=7))
    parts = [faulty.take(np.arange(s, min(s + 9, len(faulty)))) for s in range(0, len(faulty), 9)]
    whole = BarEngine()
    expected = [u for part in parts for u in whole.apply_trades(part).updates]
    expected += whole.advance(T0 + 10 * NS_PER_MINUTE)

    engine = BarEngine()
    got: list[BarUpdate] = []
    for index, part in enumerate(parts):
        if index == len(parts) // 2:  # restart from a stored whole snapshot, as after a crash
            saved = json.loads(json.dumps(engine.snapshot()))
            engine = BarEngine()
            engine.restore(saved)
        got += engine.apply_trades(part).updates
    got += engine.advance(T0 + 10 * NS_PER_MINUTE)
    assert got == expected
    minutes = latest_finals(got, "1m").values()
    assert sum(u.duplicate_trades for u in minutes) > 0
    assert sum(u.out_of_order_trades for u in minutes) > 0


def test_state_saved_before_the_counters_existed_restores_and_counts_on() -> None:
    engine = BarEngine()
    engine.apply_trades(_run([1, 2], [10, 20]))
    engine.apply_trades(_run([3], [75]))
    heads, rows = engine.snapshot_changes()
    legacy = [(exchange, symbol, label, row[:15]) for exchange, symbol, label, row in rows]
    for head in heads:
        head.pop("order_key")
    restored = BarEngine()
    restored.restore(json.loads(json.dumps(heads)), legacy)
    result = restored.apply_trades(_run([4, 1], [15, 10]))  # late into minute 0: a revision
    (revised,) = [u for u in result.updates if u.timeframe.label == "1m"]
    # No saved order key: the latest event time stands in for it, so trade 4 is out of order.
    assert (revised.trade_count, revised.duplicate_trades, revised.out_of_order_trades) == (3, 0, 1)
