"""Finality, out-of-order and duplicate trades, revisions after finality, and too-late trades."""

from __future__ import annotations

import itertools

import numpy as np

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND, TIMEFRAMES
from tickmesh.v2 import market_pb2

from .kline_helpers import bar_fields, whole

MINUTE = NS_PER_MINUTE
SECOND = NS_PER_SECOND
T0 = 1_700_000_000 * SECOND - (1_700_000_000 * SECOND) % (TIMEFRAMES[-1].duration_ns)
BarKey = tuple[str, int]


def trades(*rows: tuple[int, float, float, int]) -> TradeRun:
    """Build a USD-M run from (trade id, price, quantity, event time ns) rows."""
    ids, prices, quantities, times = zip(*rows, strict=True)
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT", ids, whole(prices), whole(quantities), times
    )


def apply_in_runs(engine: BarEngine, run: TradeRun, cuts: list[int]) -> list[BarUpdate]:
    """Apply a run cut at the given positions; return every bar update."""
    updates: list[BarUpdate] = []
    bounds = [0, *cuts, len(run)]
    for start, stop in itertools.pairwise(bounds):
        updates += engine.apply_trades(run.take(np.arange(start, stop))).updates
    return updates


def latest_finals(updates: list[BarUpdate]) -> dict[BarKey, BarUpdate]:
    """Return the latest final version of every bar."""
    return {(u.timeframe.label, u.open_time_ns): u for u in updates if u.final}


def assert_same_bar(actual: BarUpdate, expected: BarUpdate) -> None:
    """Bars agree exactly in every kline field, in any order of arrival (integer sums)."""
    assert bar_fields(actual) == bar_fields(expected)


def end_of_day_after(run: TradeRun) -> int:
    """Return a clock just past the end of the UTC day of the run's last trade."""
    day = TIMEFRAMES[-1]
    return day.bucket(int(run.event_time_ns.max())) + day.duration_ns + 3 * SECOND


def test_replay_shuffled_within_lateness_and_sent_twice_gives_same_finals(
    btc_2023_trades: TradeRun,
) -> None:
    run = btc_2023_trades
    clock = end_of_day_after(run)
    reference = BarEngine()
    expected = latest_finals(apply_in_runs(reference, run, []) + reference.advance(clock))

    rng = np.random.default_rng(20230405)
    positions = np.concatenate((np.arange(len(run)), np.arange(len(run))))
    # Each copy arrives up to 1.8 s after its event time: never later than the 2 s lateness.
    arrival = run.event_time_ns[positions] + rng.integers(0, 1_800_000_000, positions.size)
    disordered = run.take(positions[np.argsort(arrival, kind="stable")])
    cuts = sorted(rng.choice(np.arange(1, len(disordered)), size=120, replace=False).tolist())

    engine = BarEngine()
    results = []
    updates: list[BarUpdate] = []
    bounds = [0, *cuts, len(disordered)]
    for start, stop in itertools.pairwise(bounds):
        result = engine.apply_trades(disordered.take(np.arange(start, stop)))
        results.append(result)
        updates += result.updates
    updates += engine.advance(clock)

    assert sum(r.duplicates for r in results) == len(run)
    assert sum(r.too_late for r in results) == 0
    assert all(u.revision == 0 for u in updates)
    actual = latest_finals(updates)
    assert actual.keys() == expected.keys()
    for key, bar in expected.items():
        assert_same_bar(actual[key], bar)


def closing_trade_that_moves_close(run: TradeRun) -> tuple[int, int]:
    """Return (minute, run position) of the first closing trade priced unlike the one before it."""
    order = np.lexsort((run.trade_ids, run.event_time_ns))
    minutes = run.event_time_ns[order] - run.event_time_ns[order] % MINUTE
    # Skip the capture's partial first minute; stop before its partial last minute.
    for last in np.flatnonzero(minutes[1:] != minutes[:-1])[1:]:
        if run.prices[order[last]] != run.prices[order[last - 1]]:
            return int(minutes[last]), int(order[last])
    raise AssertionError("no closing trade moves its minute's close")


def test_trade_after_finality_revises_minute_and_every_parent_once(
    btc_2023_trades: TradeRun,
) -> None:
    run = btc_2023_trades
    clock = end_of_day_after(run)
    reference = BarEngine()
    expected = latest_finals(apply_in_runs(reference, run, []) + reference.advance(clock))

    # Withhold the closing trade of the first full minute whose close it sets alone.
    minute, withheld = closing_trade_that_moves_close(run)
    engine = BarEngine()
    rest = run.take(np.delete(np.arange(len(run)), withheld))
    before = latest_finals(apply_in_runs(engine, rest, []) + engine.advance(clock))
    assert before[("1m", minute)].close != expected[("1m", minute)].close

    late = engine.apply_trades(run.take(np.array([withheld])))

    assert late.accepted == 1
    assert [(u.timeframe.label, u.revision, u.final) for u in late.updates] == [
        (tf.label, 1, True) for tf in TIMEFRAMES
    ]
    for update in late.updates:
        key = (update.timeframe.label, update.open_time_ns)
        assert update.open_time_ns == update.timeframe.bucket(minute)
        assert_same_bar(update, expected[key])
    again = engine.apply_trades(run.take(np.array([withheld])))
    assert (again.duplicates, again.updates) == (1, [])


def test_late_trade_in_flat_minute_revises_following_flats() -> None:
    engine = BarEngine()
    engine.apply_trades(trades((1, 100.0, 1.0, T0 + 10 * SECOND)))
    updates = engine.apply_trades(trades((2, 103.0, 1.0, T0 + 3 * MINUTE + 5 * SECOND))).updates
    finals = latest_finals(updates)
    assert [finals[("1m", T0 + i * MINUTE)].close for i in range(3)] == [100.0, 100.0, 100.0]
    assert finals[("1m", T0 + MINUTE)].trade_count == 0

    late = engine.apply_trades(trades((3, 101.0, 2.0, T0 + MINUTE + 30 * SECOND))).updates

    got = {(u.timeframe.label, u.open_time_ns): u for u in late}
    bar = got[("1m", T0 + MINUTE)]
    assert (bar.open, bar.close, bar.volume, bar.trade_count, bar.revision) == (
        101.0,
        101.0,
        2.0,
        1,
        1,
    )
    flat = got[("1m", T0 + 2 * MINUTE)]
    assert (flat.open, flat.close, flat.volume, flat.revision) == (101.0, 101.0, 0.0, 1)
    assert set(got) == {("1m", T0 + MINUTE), ("1m", T0 + 2 * MINUTE)}
    forming = {u.timeframe.label: u for u in engine.take_forming_updates()}
    assert (forming["5m"].open, forming["5m"].close, forming["5m"].trade_count) == (100.0, 103.0, 3)


def test_watermark_reaching_bar_end_finalizes_bar() -> None:
    engine = BarEngine()
    engine.apply_trades(trades((1, 10.0, 1.0, T0 + 30 * SECOND)))
    assert engine.apply_trades(trades((2, 11.0, 1.0, T0 + MINUTE + SECOND))).updates == []
    updates = engine.apply_trades(trades((3, 12.0, 1.0, T0 + MINUTE + 2 * SECOND))).updates
    assert [(u.timeframe.label, u.open_time_ns, u.close) for u in updates] == [("1m", T0, 10.0)]


def test_trade_before_first_bar_within_lateness_is_not_a_revision() -> None:
    engine = BarEngine()
    engine.apply_trades(trades((5, 20.0, 1.0, T0 + MINUTE + 500_000_000)))
    early = engine.apply_trades(trades((4, 19.0, 1.0, T0 + MINUTE - 500_000_000)))
    assert early.updates == []
    updates = engine.advance(T0 + 2 * MINUTE + 2 * SECOND)
    assert [(u.open_time_ns, u.open, u.revision) for u in updates if u.timeframe.label == "1m"] == [
        (T0, 19.0, 0),
        (T0 + MINUTE, 20.0, 0),
    ]


def test_wall_clock_finalizes_idle_symbol_with_flat_bars() -> None:
    engine = BarEngine()
    engine.apply_trades(trades((1, 50.0, 2.0, T0 + 5 * SECOND)))
    assert engine.advance(T0 + MINUTE + SECOND) == []
    updates = engine.advance(T0 + 3 * MINUTE + 2 * SECOND)
    minutes = [u for u in updates if u.timeframe.label == "1m"]
    assert [(u.open_time_ns, u.close, u.trade_count) for u in minutes] == [
        (T0, 50.0, 1),
        (T0 + MINUTE, 50.0, 0),
        (T0 + 2 * MINUTE, 50.0, 0),
    ]
    assert minutes[1].vwap == 50.0
    assert all(u.final and u.revision == 0 for u in updates)


def test_trade_older_than_retention_reported_too_late() -> None:
    engine = BarEngine(EngineConfig(retention_ns=10 * MINUTE))
    engine.apply_trades(trades((1, 10.0, 1.0, T0 + 5 * SECOND)))
    engine.apply_trades(trades((2, 11.0, 1.0, T0 + 30 * MINUTE)))
    late = trades((3, 9.0, 1.0, T0 + 15 * MINUTE), (4, 12.0, 1.0, T0 + 25 * MINUTE))

    result = engine.apply_trades(late)

    assert (result.accepted, result.too_late) == (1, 1)
    assert result.too_late_trades is not None
    assert result.too_late_trades.trade_ids.tolist() == [3]
    # Minutes 26..28 were flat at 10.0 and are final: they now repeat the new close 12.0.
    assert [
        (u.open_time_ns, u.close, u.trade_count, u.revision)
        for u in result.updates
        if u.timeframe.label == "1m"
    ] == [(T0 + 25 * MINUTE, 12.0, 1, 1)] + [(T0 + i * MINUTE, 12.0, 0, 1) for i in (26, 27, 28)]
    assert engine.apply_trades(trades((3, 9.0, 1.0, T0 + 15 * MINUTE))).duplicates == 1


def test_idle_stretch_longer_than_retention_fills_flats_only_within_horizon() -> None:
    engine = BarEngine(EngineConfig(retention_ns=10 * MINUTE))
    engine.apply_trades(trades((1, 7.0, 1.0, T0 + 5 * SECOND)))

    updates = engine.advance(T0 + 60 * MINUTE)

    # Frontier 00:59:58, horizon 00:49:58: flats start at the horizon's bucket.
    by_label: dict[str, list[int]] = {}
    for update in updates:
        by_label.setdefault(update.timeframe.label, []).append((update.open_time_ns - T0) // MINUTE)
    assert by_label["1m"] == [0, *range(49, 59)]
    assert by_label["5m"] == [0, 45, 50]
    assert all(u.close == 7.0 for u in updates)
