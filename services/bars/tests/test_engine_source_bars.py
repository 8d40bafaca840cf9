"""Source bars (Yahoo 1m OHLCV): roll-up, duplicates, replacements, gaps and quarantine.

Source bars arrive as decimal strings and are parsed exactly; they carry no taker-buy volumes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import QuarantineReason, SourceBar
from tickmesh.core.decimals import DecimalValueError
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND, TIMEFRAMES
from tickmesh.v2 import market_pb2

MINUTE = NS_PER_MINUTE
DAY = TIMEFRAMES[-1].duration_ns
T0 = 1_727_875_800 * NS_PER_SECOND  # 2024-10-02 13:30 UTC, a US market open
YAHOO = market_pb2.EXCHANGE_YAHOO


def message(minute: int, o: str, h: str, lo: str, c: str, v: str) -> market_pb2.SourceBar:
    """Return an AAPL 1m source bar message `minute` minutes after T0."""
    return market_pb2.SourceBar(
        exchange=YAHOO,
        symbol="AAPL",
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=T0 + minute * MINUTE,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
    )


def bar(minute: int, o: str, h: str, lo: str, c: str, v: str) -> SourceBar:
    """Return an AAPL 1m source bar `minute` minutes after T0, parsed exactly."""
    return SourceBar.from_proto(message(minute, o, h, lo, c, v))


def changed(minute: int, **fields: Any) -> SourceBar:
    """Return FIVE[minute]'s message with some fields changed, parsed exactly."""
    original = FIVE_MESSAGES[minute]
    edited = market_pb2.SourceBar()
    edited.CopyFrom(original)
    for name, value in fields.items():
        setattr(edited, name, value)
    return SourceBar.from_proto(edited)


FIVE_MESSAGES = [
    message(0, "10.0", "11.0", "9.5", "10.5", "100"),
    message(1, "10.5", "12", "10", "11", "50"),
    message(2, "11", "11.5", "10.8", "11.2", "0"),
    message(3, "11.2", "11.3", "9", "9.8", "70.0"),
    message(4, "9.8", "10.1", "9.7", "10", "30"),
]
FIVE = [SourceBar.from_proto(m) for m in FIVE_MESSAGES]


def fields(update: BarUpdate) -> tuple[Decimal, ...]:
    """The served open, high, low, close and volume of a bar, as Decimals."""
    served = update.to_proto()
    return tuple(Decimal(getattr(served, n)) for n in ("open", "high", "low", "close", "volume"))


def by_key(updates: list[BarUpdate]) -> dict[tuple[str, int], BarUpdate]:
    """Index updates by (timeframe label, open time)."""
    return {(u.timeframe.label, u.open_time_ns): u for u in updates}


def test_source_bars_roll_up_into_five_minute_bar() -> None:
    engine = BarEngine()
    result = engine.apply_source_bars(FIVE)
    assert (result.accepted, result.duplicates, result.replaced) == (5, 0, 0)
    finals = by_key(result.updates + engine.advance(T0 + 5 * MINUTE + 2 * NS_PER_SECOND))
    five = finals[("5m", T0)]
    assert fields(five) == tuple(Decimal(v) for v in ("10", "12", "9", "10", "250"))
    assert five.trade_count == 0
    first = finals[("1m", T0)].to_proto()
    # No quote volume from Yahoo: volume at the typical price (H+L+C)/3, rounded to 0.1 * 1.
    assert first.quote_volume == "1033.3"  # 100 * 31 / 3 = 1033.33...
    assert not first.HasField("taker_buy_volume")
    assert finals[("1m", T0)].vwap == 10.333
    assert finals[("1m", T0 + 2 * MINUTE)].to_proto().volume == "0"
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
    corrected = changed(1, high="11.05", volume="55")

    result = engine.apply_source_bars([corrected])

    assert result.replaced == 1
    revised = by_key(result.updates)
    assert set(revised) == {("1m", T0 + MINUTE), ("5m", T0)}
    minute = revised[("1m", T0 + MINUTE)]
    assert (minute.to_proto().high, minute.revision) == ("11.05", 1)
    five = revised[("5m", T0)]
    # The old high 12 must vanish: a merge could not lower it, only a rebuild from 1m bars.
    assert (five.to_proto().high, five.to_proto().volume, five.revision) == ("11.5", "255", 1)


def test_changed_source_bar_while_forming_updates_forming_bars() -> None:
    engine = BarEngine()
    engine.apply_source_bars(FIVE[:2])
    engine.take_forming_updates()
    result = engine.apply_source_bars([changed(1, close="10.7")])
    assert (result.replaced, result.updates) == (1, [])
    forming = by_key(engine.take_forming_updates())
    assert forming[("1m", T0 + MINUTE)].to_proto().close == "10.7"
    assert forming[("1d", TIMEFRAMES[-1].bucket(T0))].to_proto().close == "10.7"


def test_source_bars_with_gap_leave_no_flat_bars() -> None:
    engine = BarEngine()
    applied = engine.apply_source_bars([FIVE[0], FIVE[3]])
    finals = applied.updates + engine.advance(T0 + 10 * MINUTE)
    assert [u.open_time_ns for u in finals if u.timeframe.label == "1m"] == [T0, T0 + 3 * MINUTE]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (changed(0, timeframe=market_pb2.TIMEFRAME_5M), "UNSUPPORTED_TIMEFRAME"),
        (changed(0, open_time_ns=T0 + 1), "MISALIGNED_OPEN_TIME"),
        (changed(0, low="10.2"), "INCONSISTENT_OHLC"),
        (changed(0, close="0"), "INVALID_PRICE"),
        (changed(0, low="-1"), "INVALID_PRICE"),
        (changed(0, volume="-1"), "INVALID_QUANTITY"),
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
    corrected = changed(1, close="10.6")
    result = engine.apply_source_bars([corrected])
    assert (result.too_late, result.replaced, result.updates) == ([corrected], 0, [])


@pytest.mark.parametrize(
    ("field", "text"),
    [("close", "nan"), ("open", "1e3"), ("high", ""), ("volume", "12,5"), ("low", "inf")],
)
def test_source_bar_that_is_not_plain_decimals_refused_naming_the_field(
    field: str, text: str
) -> None:
    with pytest.raises(DecimalValueError, match=rf"source_bar\.{field}: "):
        changed(0, **{field: text})


def test_source_bar_at_a_finer_scale_raises_the_instrument_scale() -> None:
    engine = BarEngine()
    engine.apply_source_bars([FIVE[0], bar(1, "10.5", "10.5625", "10.5", "10.5", "0.25")])
    day = by_key(engine.take_forming_updates())[("1d", TIMEFRAMES[-1].bucket(T0))]
    assert fields(day) == tuple(Decimal(v) for v in ("10", "11", "9.5", "10.5", "100.25"))
