"""Source bars (Yahoo 1m OHLCV): roll-up, duplicates, replacements, gaps and quarantine."""

from __future__ import annotations

import dataclasses

import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import QuarantineReason, SourceBar
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND, TIMEFRAMES
from tickmesh.v1 import market_pb2

MINUTE = NS_PER_MINUTE
DAY = TIMEFRAMES[-1].duration_ns
T0 = 1_727_875_800 * NS_PER_SECOND  # 2024-10-02 13:30 UTC, a US market open
YAHOO = market_pb2.EXCHANGE_YAHOO


def bar(minute: int, o: float, h: float, lo: float, c: float, v: float) -> SourceBar:
    """Return an AAPL 1m source bar `minute` minutes after T0."""
    return SourceBar(YAHOO, "AAPL", market_pb2.TIMEFRAME_1M, T0 + minute * MINUTE, o, h, lo, c, v)


FIVE = [
    bar(0, 10.0, 11.0, 9.5, 10.5, 100.0),
    bar(1, 10.5, 12.0, 10.0, 11.0, 50.0),
    bar(2, 11.0, 11.5, 10.8, 11.2, 0.0),
    bar(3, 11.2, 11.3, 9.0, 9.8, 70.0),
    bar(4, 9.8, 10.1, 9.7, 10.0, 30.0),
]


def by_key(updates: list[BarUpdate]) -> dict[tuple[str, int], BarUpdate]:
    """Index updates by (timeframe label, open time)."""
    return {(u.timeframe.label, u.open_time_ns): u for u in updates}


def test_source_bars_roll_up_into_five_minute_bar() -> None:
    engine = BarEngine()
    result = engine.apply_source_bars(FIVE)
    assert (result.accepted, result.duplicates, result.replaced) == (5, 0, 0)
    finals = by_key(result.updates + engine.advance(T0 + 5 * MINUTE + 2 * NS_PER_SECOND))
    five = finals[("5m", T0)]
    assert (five.open, five.high, five.low, five.close, five.volume) == (
        10.0,
        12.0,
        9.0,
        10.0,
        250.0,
    )
    assert five.trade_count == 0
    first = finals[("1m", T0)]
    assert first.quote_volume == pytest.approx(100.0 * (11.0 + 9.5 + 10.5) / 3)
    assert first.vwap == pytest.approx((11.0 + 9.5 + 10.5) / 3)
    assert finals[("1m", T0 + 2 * MINUTE)].vwap == 11.2


def test_source_bar_resent_identical_is_duplicate() -> None:
    engine = BarEngine()
    engine.apply_source_bars(FIVE)
    engine.take_forming_updates()
    result = engine.apply_source_bars(FIVE[3:])
    assert (result.accepted, result.duplicates, result.updates) == (0, 2, [])
    assert engine.take_forming_updates() == []


def test_changed_source_bar_after_final_replaces_and_rebuilds_parents() -> None:
    engine = BarEngine()
    engine.apply_source_bars(FIVE)
    engine.advance(T0 + 5 * MINUTE + 2 * NS_PER_SECOND)
    corrected = dataclasses.replace(FIVE[1], high=11.05, volume=55.0)

    result = engine.apply_source_bars([corrected])

    assert result.replaced == 1
    revised = by_key(result.updates)
    assert set(revised) == {("1m", T0 + MINUTE), ("5m", T0)}
    assert (revised[("1m", T0 + MINUTE)].high, revised[("1m", T0 + MINUTE)].revision) == (11.05, 1)
    five = revised[("5m", T0)]
    # The old high 12.0 must vanish: a merge could not lower it, only a rebuild from 1m bars.
    assert (five.high, five.volume, five.revision) == (11.5, 255.0, 1)


def test_changed_source_bar_while_forming_updates_forming_bars() -> None:
    engine = BarEngine()
    engine.apply_source_bars(FIVE[:2])
    engine.take_forming_updates()
    result = engine.apply_source_bars([dataclasses.replace(FIVE[1], close=10.7)])
    assert (result.replaced, result.updates) == (1, [])
    forming = by_key(engine.take_forming_updates())
    assert forming[("1m", T0 + MINUTE)].close == 10.7
    assert forming[("1d", TIMEFRAMES[-1].bucket(T0))].close == 10.7


def test_source_bars_with_gap_leave_no_flat_bars() -> None:
    engine = BarEngine()
    applied = engine.apply_source_bars([FIVE[0], FIVE[3]])
    finals = applied.updates + engine.advance(T0 + 10 * MINUTE)
    assert [u.open_time_ns for u in finals if u.timeframe.label == "1m"] == [T0, T0 + 3 * MINUTE]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (dataclasses.replace(FIVE[0], timeframe=market_pb2.TIMEFRAME_5M), "UNSUPPORTED_TIMEFRAME"),
        (dataclasses.replace(FIVE[0], open_time_ns=T0 + 1), "MISALIGNED_OPEN_TIME"),
        (dataclasses.replace(FIVE[0], low=10.2), "INCONSISTENT_OHLC"),
        (dataclasses.replace(FIVE[0], close=float("nan")), "INVALID_PRICE"),
        (dataclasses.replace(FIVE[0], volume=-1.0), "INVALID_QUANTITY"),
    ],
)
def test_unsound_source_bar_quarantined(source: SourceBar, reason: str) -> None:
    engine = BarEngine()
    result = engine.apply_source_bars([source])
    assert result.quarantined == [(source, QuarantineReason[reason])]
    assert (result.accepted, engine.take_forming_updates()) == (0, [])


def test_changed_source_bar_of_a_pruned_day_too_late() -> None:
    engine = BarEngine(EngineConfig(retention_ns=DAY + 2 * MINUTE))
    engine.apply_source_bars(FIVE)
    engine.advance(T0 + DAY)
    corrected = dataclasses.replace(FIVE[1], close=10.6)
    result = engine.apply_source_bars([corrected])
    assert (result.too_late, result.replaced, result.updates) == ([corrected], 0, [])
