"""Snapshot and restore: a restarted engine continues exactly where the old one stopped."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, TIMEFRAMES


def runs_of(run: TradeRun, size: int) -> list[TradeRun]:
    """Cut a run into consecutive runs of `size` trades."""
    return [run.take(np.arange(i, min(i + size, len(run)))) for i in range(0, len(run), size)]


def through_json(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round-trip snapshots through JSON text, as the server stores them in PostgreSQL."""
    loaded: list[dict[str, Any]] = json.loads(json.dumps(snapshots))
    return loaded


def clock_after(run: TradeRun) -> int:
    """Return a clock past the end of the UTC day of the run's last trade."""
    day = TIMEFRAMES[-1]
    return day.bucket(int(run.event_time_ns.max())) + day.duration_ns + NS_PER_MINUTE


@pytest.mark.parametrize("stop_fraction", [0.3, 0.71])
def test_restore_mid_replay_continues_with_identical_finals(
    xrpeth_trades: TradeRun, stop_fraction: float
) -> None:
    parts = runs_of(xrpeth_trades, 250)
    stop = int(len(parts) * stop_fraction)
    clock = clock_after(xrpeth_trades)
    uninterrupted = BarEngine()
    expected: list[BarUpdate] = []
    for part in parts:
        expected += uninterrupted.apply_trades(part).updates
    expected += uninterrupted.advance(clock)

    first = BarEngine()
    actual: list[BarUpdate] = []
    for part in parts[:stop]:
        actual += first.apply_trades(part).updates
    saved = through_json(first.snapshot())
    restarted = BarEngine()
    restarted.restore(saved)
    for part in parts[stop:]:
        actual += restarted.apply_trades(part).updates
    actual += restarted.advance(clock)

    assert actual == expected


def test_restore_then_resend_of_applied_runs_is_all_duplicates(btc_2023_trades: TradeRun) -> None:
    parts = runs_of(btc_2023_trades, 400)
    engine = BarEngine()
    for part in parts[:10]:
        engine.apply_trades(part)
    restarted = BarEngine()
    restarted.restore(through_json(engine.snapshot()))

    # A collector resends every batch not yet acknowledged: here the last three applied ones.
    resent = [restarted.apply_trades(part) for part in parts[7:10]]
    fresh = restarted.apply_trades(parts[10])

    assert [r.duplicates for r in resent] == [len(part) for part in parts[7:10]]
    assert all(r.updates == [] for r in resent)
    assert fresh.duplicates == 0
    assert fresh.accepted + fresh.non_market == len(parts[10])


def test_restore_marks_forming_bars_for_streaming(btc_2023_trades: TradeRun) -> None:
    engine = BarEngine()
    engine.apply_trades(runs_of(btc_2023_trades, 1000)[0])
    forming = engine.take_forming_updates()
    restarted = BarEngine()
    restarted.restore(through_json(engine.snapshot()))
    assert restarted.take_forming_updates() == forming
    assert restarted.take_forming_updates() == []


def test_snapshot_changed_lists_only_symbols_touched_since_last_call(
    btc_2023_trades: TradeRun, xrpeth_trades: TradeRun
) -> None:
    engine = BarEngine()
    engine.apply_trades(runs_of(btc_2023_trades, 100)[0])
    engine.apply_trades(runs_of(xrpeth_trades, 100)[0])
    assert [s["symbol"] for s in engine.snapshot_changed()] == ["XRPETH", "BTCUSDT"]
    engine.apply_trades(runs_of(btc_2023_trades, 100)[1])
    assert [s["symbol"] for s in engine.snapshot_changed()] == ["BTCUSDT"]
    # A resend changes the state only through the duplicate counts of forming bars.
    engine.apply_trades(runs_of(btc_2023_trades, 100)[1])
    assert [s["symbol"] for s in engine.snapshot_changed()] == ["BTCUSDT"]
    late = engine.apply_trades(runs_of(btc_2023_trades, 100)[60])
    assert late.accepted == 100
    engine.snapshot_changed()
    resent = engine.apply_trades(runs_of(btc_2023_trades, 100)[0])  # minutes final by now
    assert (resent.duplicates, resent.counted_duplicates) == (100, 0)
    assert engine.snapshot_changed() == []


def test_restore_unknown_snapshot_version_raises() -> None:
    with pytest.raises(ValueError, match="snapshot version"):
        BarEngine().restore([{"version": 99}])


def test_restore_from_incremental_heads_and_final_rows_continues_identically(
    xrpeth_trades: TradeRun,
) -> None:
    parts = runs_of(xrpeth_trades, 200)
    stop = int(len(parts) * 0.6)
    clock = clock_after(xrpeth_trades)
    uninterrupted = BarEngine()
    expected: list[BarUpdate] = []
    for part in parts:
        expected += uninterrupted.apply_trades(part).updates
    expected += uninterrupted.advance(clock)

    # A store as the server keeps it: the latest head per symbol, final rows upserted by key.
    heads: dict[tuple[int, str], dict[str, Any]] = {}
    rows: dict[tuple[int, str, str, int], list[Any]] = {}
    first = BarEngine()
    actual: list[BarUpdate] = []
    for position, part in enumerate(parts[:stop]):
        actual += first.apply_trades(part).updates
        if position % 7 == 0 or position == stop - 1:
            changed_heads, final_rows = first.snapshot_changes()
            for head in through_json(changed_heads):
                heads[(head["exchange"], head["symbol"])] = head
            for exchange, symbol, label, row in final_rows:
                rows[(exchange, symbol, label, row[0])] = json.loads(json.dumps(row))
    assert max(len(json.dumps(head)) for head in heads.values()) < 5_000
    restarted = BarEngine()
    restarted.restore(heads.values(), [(*key[:3], row) for key, row in rows.items()])
    for part in parts[stop:]:
        actual += restarted.apply_trades(part).updates
    actual += restarted.advance(clock)

    assert actual == expected


def test_restore_incremental_keeps_final_bars_for_revisions(btc_2023_trades: TradeRun) -> None:
    order = np.argsort(btc_2023_trades.event_time_ns, kind="stable")
    withheld = int(order[len(order) // 2])
    rest = btc_2023_trades.take(np.delete(np.arange(len(btc_2023_trades)), withheld))
    engine = BarEngine()
    for part in runs_of(rest, 500):
        engine.apply_trades(part)
    heads, rows = engine.snapshot_changes()
    restarted = BarEngine()
    restarted.restore(through_json(heads), [(e, s, label, list(row)) for e, s, label, row in rows])

    late = btc_2023_trades.take(np.array([withheld]))
    expected = engine.apply_trades(late).updates
    actual = restarted.apply_trades(late).updates

    assert [u.revision for u in actual] == [1, 1]
    assert actual == expected


def test_clock_ticks_within_a_minute_leave_idle_symbol_unchanged(
    btc_2023_trades: TradeRun,
) -> None:
    engine = BarEngine()
    engine.apply_trades(runs_of(btc_2023_trades, 100)[0])
    engine.snapshot_changes()
    last = int(btc_2023_trades.event_time_ns[:100].max())
    minute_end = last - last % NS_PER_MINUTE + NS_PER_MINUTE
    lateness = engine.config.allowed_lateness_ns
    for tick in range(5):
        engine.advance(minute_end + lateness - 5 * NS_PER_MINUTE // 100 + tick)
    assert engine.snapshot_changes() == ([], [])
    finals = engine.advance(minute_end + lateness)
    heads, rows = engine.snapshot_changes()
    assert [head["symbol"] for head in heads] == ["BTCUSDT"]
    assert len(rows) == len(finals) == 1
