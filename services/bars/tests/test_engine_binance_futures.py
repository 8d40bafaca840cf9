"""Bars rebuilt from real Binance USD-M @trade captures against Binance's own 1m klines.

Every comparison is exact: the Decimal of each decimal string the bar is served with equals
the Decimal of the kline's string, for all nine kline fields; no tolerance anywhere.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v2 import market_pb2

from .kline_helpers import KLINE_FIELDS, FuturesKlines, bar_fields

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


def matches(bar: BarUpdate, kline: dict[str, Decimal]) -> bool:
    """Tell whether a bar equals a kline exactly in all nine fields."""
    return bar_fields(bar) == kline


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
        served = bar_fields(bar)
        for name in KLINE_FIELDS:
            assert served[name] == klines[minute][name], (label, minute, name)
        assert bar.vwap == float(served["quote_volume"] / served["volume"])
        assert bar.revision == 0


@pytest.mark.parametrize("label", list(EXPECTED_MINUTES))
def test_replay_partial_edge_minutes_differ_from_binance_klines(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]], label: str
) -> None:
    run, klines = futures_cases[label]
    finals = minute_finals(replay(BarEngine(), run, 500))
    for edge in EXPECTED_MINUTES[label][2]:
        minute = edge * NS_PER_SECOND
        assert finals[minute].trade_count < klines[minute]["count"]
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
    assert bar_fields(finals[INSURANCE_MINUTE_NS])["high"] == Decimal("28154.2")


def test_replay_insurance_fund_counted_as_market_breaks_kline(
    futures_cases: dict[str, tuple[TradeRun, FuturesKlines]],
) -> None:
    run, klines = futures_cases["2023-04-04"]
    all_market = TradeRun.from_columns(
        run.exchange,
        run.symbol,
        run.trade_ids,
        run.prices,
        run.quantities,
        run.event_time_ns,
        sides=run.sides,
        price_scale=run.price_scale,
        quantity_scale=run.quantity_scale,
    )
    engine = BarEngine()
    updates = engine.apply_trades(all_market).updates
    finals = minute_finals(updates + engine.advance(int(run.event_time_ns.max()) + MINUTE))
    bar = finals[INSURANCE_MINUTE_NS]
    assert not matches(bar, klines[INSURANCE_MINUTE_NS])
    assert bar_fields(bar)["high"] == Decimal("28722.5")
    assert bar.trade_count == klines[INSURANCE_MINUTE_NS]["count"] + 1


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
    served = bar_fields(bar)
    assert (served["open"], served["close"]) == (minutes[0]["open"], minutes[-1]["close"])
    assert served["high"] == max(k["high"] for k in minutes)
    assert served["low"] == min(k["low"] for k in minutes)
    for name in ("count", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume"):
        assert served[name] == sum(k[name] for k in minutes), name
    assert bar.timeframe.proto == market_pb2.TIMEFRAME_5M
