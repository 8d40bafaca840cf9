"""The analytics input bar, its conversion from the proto and the rule for bars unfit for indicators."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tickmesh.v1 import market_pb2


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

    @property
    def is_flat(self) -> bool:
        """Return True for a bar without trades (zero volume; the exchange repeats the last close)."""
        return self.volume == 0.0


def bar_from_proto(bar: market_pb2.Bar) -> BarInput:
    """Return the analytics view of a proto bar."""
    return BarInput(
        open_time_ns=bar.open_time_ns,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        quote_volume=bar.quote_volume,
        trade_count=bar.trade_count,
        final=bar.final,
        revision=bar.revision,
        duplicate_trades=bar.duplicate_trades,
        out_of_order_trades=bar.out_of_order_trades,
    )


def rejection_reason(bar: BarInput) -> str | None:
    """Return why a bar must not feed the indicators (NaN/inf, high < low, negative volume), else None."""
    values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
    if not all(math.isfinite(value) for value in values):
        return "non-finite price or volume"
    if bar.high < bar.low:
        return f"high {bar.high} below low {bar.low}"
    if bar.volume < 0.0:
        return f"negative volume {bar.volume}"
    return None
