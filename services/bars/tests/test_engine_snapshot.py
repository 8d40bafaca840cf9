"""Snapshot and restore: a restarted engine continues exactly where the old one stopped."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tickmesh.bars import saved_state
from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.decimals import format_decimal
from tickmesh.core.timeframes import NS_PER_MINUTE, TIMEFRAMES


def runs_of(run: TradeRun, size: int) -> list[TradeRun]:
    """Cut a run into consecutive runs of `size` trades."""
    return [run.take(np.arange(i, min(i + size, len(run)))) for i in range(0, len(run), size)]


def through_json(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round-trip snapshots through JSON text, as the server stored them before migration 0013."""
    loaded: list[dict[str, Any]] = json.loads(json.dumps(snapshots))
    return loaded


def through_storage(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round-trip snapshots through the bytes the server stores in PostgreSQL (saved_state)."""
    return [saved_state.decode(saved_state.encode(snapshot)) for snapshot in snapshots]


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
    saved = through_storage(first.snapshot())
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
    restarted.restore(through_storage(engine.snapshot()))

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
    restarted.restore(through_storage(engine.snapshot()))
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
            for head in through_storage(changed_heads):
                heads[(head["exchange"], head["symbol"])] = head
            for exchange, symbol, label, row in final_rows:
                rows[(exchange, symbol, label, row[0])] = saved_state.decode(
                    saved_state.encode(row)
                )
    assert max(len(saved_state.encode(head)) for head in heads.values()) < 3_000
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
    restarted.restore(
        through_storage(heads), [(e, s, label, list(row)) for e, s, label, row in rows]
    )

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


def _as_float_version(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a snapshot as the float version of the engine saved it (version 1)."""
    price, quantity = 10 ** snapshot["price_scale"], 10 ** snapshot["quantity_scale"]
    books = {}
    for label, book in snapshot["books"].items():
        rows = []
        for row in book["bars"]:
            legacy = list(row[:17])
            for index in (1, 2, 3, 4):
                legacy[index] = row[index] / price
            legacy[9] = row[9] / quantity
            # A float sum of the trades' notionals: off from the exact value in the last bits.
            legacy[10] = row[10] / (price * quantity) * (1 + 2**-50)
            rows.append(legacy)
        close = book["prev_close"]
        books[label] = {
            **book,
            "bars": rows,
            "prev_close": None if close is None else close / price,
        }
    legacy_head = {k: v for k, v in snapshot.items() if k not in ("price_scale", "quantity_scale")}
    return {**legacy_head, "version": 1, "books": books}


def test_state_saved_by_the_float_version_restores_exactly_and_continues(
    xrpeth_trades: TradeRun,
) -> None:
    parts = runs_of(xrpeth_trades, 250)
    stop = len(parts) // 2
    clock = clock_after(xrpeth_trades)
    uninterrupted = BarEngine()
    expected: list[BarUpdate] = []
    for part in parts:
        expected += uninterrupted.apply_trades(part).updates
    expected += uninterrupted.advance(clock)

    first = BarEngine()
    for part in parts[:stop]:
        first.apply_trades(part)
    legacy = [_as_float_version(state) for state in through_json(first.snapshot())]
    restarted = BarEngine()
    restarted.restore(through_json(legacy))
    actual: list[BarUpdate] = []
    for part in parts[stop:]:
        actual += restarted.apply_trades(part).updates
    actual += restarted.advance(clock)

    # Prices come back exactly (repr of the exchange's decimals), volumes at 15 significant
    # digits as migration 0005 converts stored candles; taker-buy volumes were never saved.
    after = {(u.timeframe.label, u.open_time_ns): u for u in expected}
    assert actual
    for update in actual:
        reference = after[(update.timeframe.label, update.open_time_ns)]
        ours, theirs = update.to_proto(), reference.to_proto()
        for name in ("open", "high", "low", "close", "volume", "quote_volume", "trade_count"):
            assert getattr(ours, name) == getattr(theirs, name), name
        if update.open_time_ns >= parts[stop].event_time_ns.min():
            continue
        assert not ours.HasField("taker_buy_volume")  # built partly from the legacy state


def test_final_rows_saved_by_the_float_version_restore() -> None:
    engine = BarEngine()
    legacy_row = [60_000_000_000, 0.1, 0.3, 0.1, 0.2, 1, 1, 2, 2, 0.30000000000000004,
                  0.07, 2, True, False, 0]  # fmt: skip
    head = engine_head_with_one_final()
    engine.restore([head], [(1, "XRPETH", "1m", legacy_row)])
    saved = engine.snapshot_symbol(1, "XRPETH")
    (row,) = [r for r in saved["books"]["1m"]["bars"] if r[0] == 60_000_000_000]
    price_scale, quantity_scale = saved["price_scale"], saved["quantity_scale"]
    texts = [format_decimal(row[i], price_scale) for i in (1, 2, 3, 4)]
    texts += [format_decimal(row[9], quantity_scale)]
    texts += [format_decimal(row[10], price_scale + quantity_scale)]
    assert texts == ["0.1", "0.3", "0.1", "0.2", "0.3", "0.07"]
    assert (row[17], row[18]) == (None, None)  # taker-buy volumes: unknown


def engine_head_with_one_final() -> dict[str, Any]:
    """A version-2 head of XRPETH whose first minute is final (at scales 1 and 1)."""
    engine = BarEngine()
    run = TradeRun.from_columns(
        1, "XRPETH", [1, 2], [1, 3], [1, 2], [60_000_000_000 + 1, 3 * 60_000_000_000],
        price_scale=1, quantity_scale=1,
    )  # fmt: skip
    engine.apply_trades(run)
    heads, _ = engine.snapshot_changes()
    head: dict[str, Any] = through_storage(heads)[0]
    return head
