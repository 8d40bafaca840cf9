"""The history lane: old trades of a live symbol are built beside it, capped, and restored safely."""

from __future__ import annotations

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.history_lane import NS_PER_DAY, HistoryLane
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v2 import market_pb2

from .kline_helpers import whole

DAY0 = 1_722_211_200 * NS_PER_SECOND  # 2024-07-29 00:00 UTC
NOW = DAY0 + 30 * NS_PER_DAY  # "today": a month later


def run(*rows: tuple[int, float, int]) -> TradeRun:
    """A spot ETHUSDT run of (trade id, price, event time ns) rows, quantity 1 each."""
    ids, prices, times = zip(*rows, strict=True)
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_SPOT,
        "ETHUSDT",
        ids,
        whole(prices),
        whole([1.0] * len(ids)),
        times,
    )


def live_engine() -> BarEngine:
    """An engine on which ETHUSDT trades now."""
    engine = BarEngine()
    engine.advance(NOW)
    engine.apply_trades(run((10_000, 2500.0, NOW - NS_PER_SECOND)))
    return engine


def one_minute(updates: list[BarUpdate]) -> dict[int, BarUpdate]:
    """The final 1m bars among `updates`, by open time."""
    return {u.open_time_ns: u for u in updates if u.final and u.timeframe.label == "1m"}


def test_route_splits_a_run_at_the_live_symbols_retained_window() -> None:
    engine = live_engine()
    lane = HistoryLane(engine.config)
    mixed = run((1, 100.0, DAY0), (2, 101.0, NOW - 60 * NS_PER_SECOND))
    live, old = lane.route(mixed, engine)
    assert live is not None
    assert old is not None
    assert (list(live.trade_ids), list(old.trade_ids)) == ([2], [1])
    # An instrument the live engine never saw is the live engine's alone.
    unseen = BarEngine()
    assert lane.route(mixed, unseen) == (mixed, None)


def test_old_trades_build_exact_final_bars_and_finalise_up_to_their_day_end() -> None:
    engine = live_engine()
    lane = HistoryLane(engine.config)
    last = DAY0 + NS_PER_DAY - 30 * NS_PER_SECOND  # 23:59:30 of day 0
    result = lane.apply_trades(
        run(
            (1, 100.0, DAY0 + 5 * NS_PER_SECOND),
            (2, 103.0, DAY0 + 50 * NS_PER_SECOND),
            (3, 99.0, last),
        ),
        engine.clock_ns,
    )
    assert (result.accepted, result.too_late) == (3, 0)
    first = one_minute(result.updates)[DAY0]
    assert (first.open, first.high, first.low, first.close, first.trade_count) == (
        *whole([100.0, 103.0, 100.0, 103.0]),
        2,
    )
    # Later the lane's clock runs on from its last trade, but stops at the end of that day:
    # the 23:59 minute and the day's 1d bar become final, and no flat bar of the next day.
    updates = lane.advance(NOW + NS_PER_DAY, engine)
    finals = one_minute(updates)
    assert max(finals) == DAY0 + NS_PER_DAY - NS_PER_MINUTE
    day_bars = [u for u in updates if u.final and u.timeframe.label == "1d"]
    assert [(u.open_time_ns, u.trade_count) for u in day_bars] == [(DAY0, 3)]


def test_restored_lane_refuses_trades_older_than_its_frontier_as_too_late() -> None:
    engine = live_engine()
    lane = HistoryLane(engine.config)
    lane.apply_trades(
        run((1, 100.0, DAY0 + 5 * NS_PER_SECOND), (2, 101.0, DAY0 + 5 * NS_PER_MINUTE)),
        engine.clock_ns,
    )
    heads = lane.take_changed_heads()
    assert [h["symbol"] for h in heads] == ["ETHUSDT"]
    restored = HistoryLane(engine.config)
    restored.restore(heads, NOW)
    # Minute 0 is final and its bar is not held after a restart: a late trade there would
    # overwrite it with a partial bar, so it is refused; minute 5 is still forming.
    result = restored.apply_trades(
        run((3, 90.0, DAY0 + 10 * NS_PER_SECOND), (4, 102.0, DAY0 + 5 * NS_PER_MINUTE + 1)),
        engine.clock_ns,
    )
    assert (result.accepted, result.too_late) == (1, 1)
    assert result.too_late_trades is not None
    assert list(result.too_late_trades.trade_ids) == [3]
