"""Bars rebuilt from real Binance USD-M @trade captures against Binance's own 1m klines."""

from __future__ import annotations

import numpy as np
import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v1 import market_pb2

FuturesKlines = dict[int, tuple[float, float, float, float, float, float, int]]
MINUTE = NS_PER_MINUTE
# 2023-04-05 00:01 UTC, the minute that holds the INSURANCE_FUND trade t=3535191080.
INSURANCE_MINUTE_NS = 1_680_652_860 * NS_PER_SECOND

# For each capture: the minutes README section 1a verified exactly (first, last; inclusive), the
# partial minutes at the capture's edges that must differ from the kline, in epoch seconds.
EXPECTED_MINUTES: dict[str, tuple[int, int, list[int]]] = {
    "2023-04-04": (1_680_652_740, 1_680_653_100, [1_680_652_680, 1_680_653_160]),
    "2024-07-18": (1_721_347_080, 1_721_347_440, [1_721_347_020, 1_721_347_500]),
    "2024-08-08": (1_723_161_300, 1_723_161_540, [1_723_161_240]),
}


def replay(engine: BarEngine, run: TradeRun, run_size: int) -> list[BarUpdate]:
    """Feed a run in consecutive slices, then move the clock far enough to finalize everything."""
    updates: list[BarUpdate] = []
    for start in range(0, len(run), run_size):
        part = run.take(np.arange(start, min(start + run_size, len(run))))
        updates += engine.apply_trades(part).updates
    updates += engine.advance(int(run.event_time_ns.max()) + 2 * MINUTE)
    return updates


def minute_finals(updates: list[BarUpdate]) -> dict[int, BarUpdate]:
    """Return the final 1m bars by open time (the latest revision of each)."""
    return {u.open_time_ns: u for u in updates if u.final and u.timeframe.label == "1m"}


def matches(bar: BarUpdate, kline: tuple[float, float, float, float, float, float, int]) -> bool:
    """Tell whether a bar equals a kline: OHLC and count exactly, volumes to 1e-9 relative."""
    open_, high, low, close, volume, quote_volume, count = kline
    return (
        (bar.open, bar.high, bar.low, bar.close, bar.trade_count)
        == (open_, high, low, close, count)
        and bar.volume == pytest.approx(volume, rel=1e-9)
        and bar.quote_volume == pytest.approx(quote_volume, rel=1e-9)
    )


@pytest.mark.parametrize("label", list(EXPECTED_MINUTES))
def test_replay_full_minutes_equal_binance_klines(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]], label: str
) -> None:
    run, klines = futures_cases[label]
    first, last, _ = EXPECTED_MINUTES[label]
    finals = minute_finals(replay(BarEngine(), run, 500))
    full_minutes = range(first * NS_PER_SECOND, (last + 60) * NS_PER_SECOND, MINUTE)
    for minute in full_minutes:
        bar = finals[minute]
        assert matches(bar, klines[minute]), (label, minute, bar, klines[minute])
        assert bar.vwap == pytest.approx(bar.quote_volume / bar.volume, rel=1e-12)
        assert bar.revision == 0


@pytest.mark.parametrize("label", list(EXPECTED_MINUTES))
def test_replay_partial_edge_minutes_differ_from_binance_klines(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]], label: str
) -> None:
    run, klines = futures_cases[label]
    finals = minute_finals(replay(BarEngine(), run, 500))
    for edge in EXPECTED_MINUTES[label][2]:
        minute = edge * NS_PER_SECOND
        assert finals[minute].trade_count < klines[minute][6]
        assert not matches(finals[minute], klines[minute])


def test_replay_insurance_fund_trade_excluded_from_bar(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]],
) -> None:
    run, klines = futures_cases["2023-04-04"]
    engine = BarEngine()
    result = engine.apply_trades(run)
    assert (result.non_market, result.accepted) == (1, len(run) - 1)
    finals = minute_finals(result.updates + engine.advance(int(run.event_time_ns.max()) + MINUTE))
    assert matches(finals[INSURANCE_MINUTE_NS], klines[INSURANCE_MINUTE_NS])
    assert finals[INSURANCE_MINUTE_NS].high == 28154.2


def test_replay_insurance_fund_counted_as_market_breaks_kline(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]],
) -> None:
    run, klines = futures_cases["2023-04-04"]
    all_market = TradeRun.from_columns(
        run.exchange, run.symbol, run.trade_ids, run.prices, run.quantities, run.event_time_ns
    )
    engine = BarEngine()
    updates = engine.apply_trades(all_market).updates
    finals = minute_finals(updates + engine.advance(int(run.event_time_ns.max()) + MINUTE))
    bar = finals[INSURANCE_MINUTE_NS]
    assert not matches(bar, klines[INSURANCE_MINUTE_NS])
    assert (bar.high, bar.trade_count) == (28722.5, klines[INSURANCE_MINUTE_NS][6] + 1)


def test_replay_higher_timeframes_equal_rollup_of_minute_klines(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]],
) -> None:
    run, klines = futures_cases["2023-04-04"]
    updates = replay(BarEngine(), run, 1000)
    five = {u.open_time_ns: u for u in updates if u.final and u.timeframe.label == "5m"}
    # 2023-04-05 00:00..00:04 lies wholly inside the capture: its 5m bar is Binance's five 1m.
    start = 1_680_652_800 * NS_PER_SECOND
    minutes = [klines[start + i * MINUTE] for i in range(5)]
    bar = five[start]
    assert (bar.open, bar.close) == (minutes[0][0], minutes[-1][3])
    assert bar.high == max(k[1] for k in minutes)
    assert bar.low == min(k[2] for k in minutes)
    assert bar.trade_count == sum(k[6] for k in minutes)
    assert bar.volume == pytest.approx(sum(k[4] for k in minutes), rel=1e-9)
    assert bar.quote_volume == pytest.approx(sum(k[5] for k in minutes), rel=1e-9)
    assert bar.timeframe.proto == market_pb2.TIMEFRAME_5M
