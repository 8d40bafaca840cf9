"""The analytics input bar, its conversion from the proto and the rule for bars unfit for indicators.

Bars carry exact decimal strings ("61700.8"); indicators and features are float64 statistics,
so each value is converted once, here, where a bar enters analytics. `float(str)` rounds
correctly, so the float is the one nearest the exchange's decimal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tickmesh.v2 import market_pb2

_NAN = math.nan


@dataclass(frozen=True, slots=True)
class BarInput:
    """One bar as analytics sees it: OHLCV plus the bar service's finality and revision."""

    open_time_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float = 0.0
    trade_count: int = 0
    final: bool = True
    revision: int = 0
    # Trades of the bar's minutes the bar service dropped as duplicates / got out of order.
    duplicate_trades: int = 0
    out_of_order_trades: int = 0
    # Why a value of the proto bar could not be read (its fields are NaN then), else None.
    defect: str | None = None
    # Base volume of trades whose buyer was the taker; NaN when unknown (source bars, old rows).
    taker_buy_volume: float = _NAN

    @property
    def is_flat(self) -> bool:
        """Return True for a bar without trades (zero volume; the exchange repeats the last close)."""
        return self.volume == 0.0


def bar_from_proto(bar: market_pb2.Bar) -> BarInput:
    """Return the analytics view of a proto bar; an unreadable value makes it a defective bar."""
    try:
        taker_buy = float(bar.taker_buy_volume) if bar.HasField("taker_buy_volume") else _NAN
        return BarInput(
            bar.open_time_ns,
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
            float(bar.volume),
            # Bars of sources without trades may leave the quote volume out: unknown, not bad.
            float(bar.quote_volume or 0.0),
            bar.trade_count,
            bar.final,
            bar.revision,
            bar.duplicate_trades,
            bar.out_of_order_trades,
            None,
            taker_buy,
        )
    except ValueError:
        return _defective(bar)


_VALUE_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume")


def _defective(bar: market_pb2.Bar) -> BarInput:
    """The slow path: read each value alone, NaN where it is not a decimal, and say which."""
    values: dict[str, float] = {}
    problems: list[str] = []
    for name in _VALUE_FIELDS:
        text: str = getattr(bar, name)
        if name == "quote_volume" and not text:
            values[name] = 0.0
            continue
        try:
            values[name] = float(text)
        except ValueError:
            values[name] = _NAN
            problems.append(f"{name}: {text!r} is not a decimal")
    return BarInput(
        bar.open_time_ns,
        values["open"],
        values["high"],
        values["low"],
        values["close"],
        values["volume"],
        values["quote_volume"],
        bar.trade_count,
        bar.final,
        bar.revision,
        bar.duplicate_trades,
        bar.out_of_order_trades,
        defect="; ".join(problems),
        taker_buy_volume=_taker_buy_or_nan(bar),
    )


def _taker_buy_or_nan(bar: market_pb2.Bar) -> float:
    # Only the features read it, and they drop what is NaN: unreadable is as good as unknown.
    if not bar.HasField("taker_buy_volume"):
        return _NAN
    try:
        return float(bar.taker_buy_volume)
    except ValueError:
        return _NAN


def rejection_reason(bar: BarInput) -> str | None:
    """Return why a bar must not feed the indicators (unreadable, NaN/inf, high < low, negative volume), else None."""
    if bar.defect is not None:
        return bar.defect
    values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
    if not all(math.isfinite(value) for value in values):
        return "non-finite price or volume"
    if bar.high < bar.low:
        return f"high {bar.high} below low {bar.low}"
    if bar.volume < 0.0:
        return f"negative volume {bar.volume}"
    return None
