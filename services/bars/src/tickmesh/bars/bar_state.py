"""One bar as it is built (a mergeable accumulator) and as it is emitted (a frozen update).

Values are exact integers: prices are mantissas at the instrument's price scale, volumes at its
quantity scale, quote volumes (sums of price * quantity) at the sum of both. Python ints never
overflow, so a day bar of a busy instrument sums exactly. Taker-buy volumes are None when
unknown (source bars, trades without aggressor sides); unknown absorbs known in a merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any

from tickmesh.core.decimals import format_decimal, power_of_ten, to_decimal
from tickmesh.core.timeframes import TimeframeSpec
from tickmesh.v2 import market_pb2

# Order keys of source bars, which have no trades: before and after every real trade id.
SOURCE_OPEN_TRADE_ID = -(2**63)
SOURCE_CLOSE_TRADE_ID = 2**63 - 1
NEVER_FINAL = -1


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """One emitted bar: forming (final False) or final with its revision (0 for the first).

    Prices are mantissas at `price_scale`, volumes at `quantity_scale`, quote volumes at
    `price_scale + quantity_scale`; the `*_text` helpers write them as plain decimal strings.
    """

    exchange: int
    symbol: str
    timeframe: TimeframeSpec
    open_time_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trade_count: int
    vwap: float
    final: bool
    revision: int
    # Trades of the bar's minutes dropped as duplicates, and accepted after a later trade.
    duplicate_trades: int = 0
    out_of_order_trades: int = 0
    taker_buy_volume: int | None = None
    taker_buy_quote_volume: int | None = None
    price_scale: int = 0
    quantity_scale: int = 0

    @property
    def close_time_ns(self) -> int:
        """Return the first nanosecond after the bar."""
        return self.open_time_ns + self.timeframe.duration_ns

    @property
    def quote_scale(self) -> int:
        """Return the scale of the quote volumes."""
        return self.price_scale + self.quantity_scale

    def price_text(self, mantissa: int) -> str:
        """Write a price mantissa of this bar as a plain decimal string."""
        return format_decimal(mantissa, self.price_scale)

    def decimals(self) -> tuple[Any, ...]:
        """Return (open, high, low, close, volume, quote volume, taker buy, taker buy quote) as Decimals."""
        ps, qs = self.price_scale, self.quantity_scale
        tb, tbq = self.taker_buy_volume, self.taker_buy_quote_volume
        return (
            to_decimal(self.open, ps),
            to_decimal(self.high, ps),
            to_decimal(self.low, ps),
            to_decimal(self.close, ps),
            to_decimal(self.volume, qs),
            to_decimal(self.quote_volume, ps + qs),
            None if tb is None else to_decimal(tb, qs),
            None if tbq is None else to_decimal(tbq, ps + qs),
        )

    def to_proto(self, change_id: int = 0) -> market_pb2.Bar:
        """Return the bar as a `tickmesh.v2.Bar`; the server assigns `change_id` when persisting."""
        return bar_message(
            self,
            self.exchange,
            self.symbol,
            self.timeframe.proto,
            self.vwap,
            self.final,
            self.revision,
            change_id,
            self.price_scale,
            self.quantity_scale,
        )


# A forming bar's prices repeat from send to send, and its close is every timeframe's close:
# their texts are cached (a hit costs a quarter of format_decimal). Volumes rarely repeat.
_price_text = lru_cache(maxsize=16_384)(format_decimal)


def bar_message(
    bar: BarUpdate | BarAccumulator,
    exchange: int,
    symbol: str,
    timeframe: int,
    vwap: float,
    final: bool,
    revision: int,
    change_id: int,
    price_scale: int,
    quantity_scale: int,
) -> market_pb2.Bar:
    """The `tickmesh.v2.Bar` of `bar`'s values at the instrument's scales."""
    ps, qs = price_scale, quantity_scale
    message = market_pb2.Bar(
        symbol=symbol,
        exchange=market_pb2.Exchange.ValueType(exchange),
        timeframe=market_pb2.Timeframe.ValueType(timeframe),
        open_time_ns=bar.open_time_ns,
        open=_price_text(bar.open, ps),
        high=_price_text(bar.high, ps),
        low=_price_text(bar.low, ps),
        close=_price_text(bar.close, ps),
        volume=format_decimal(bar.volume, qs),
        quote_volume=format_decimal(bar.quote_volume, ps + qs),
        trade_count=bar.trade_count,
        vwap=vwap,
    )
    # Zero is proto3's default, the same bytes set or not: a forming bar sets none of these,
    # and each keyword costs as much as a field's text.
    if final:
        message.final = final
    if revision:
        message.revision = revision
    if change_id:
        message.change_id = change_id
    if bar.duplicate_trades:
        message.duplicate_trades = bar.duplicate_trades
    if bar.out_of_order_trades:
        message.out_of_order_trades = bar.out_of_order_trades
    if bar.taker_buy_volume is not None:
        message.taker_buy_volume = format_decimal(bar.taker_buy_volume, qs)
    if bar.taker_buy_quote_volume is not None:
        message.taker_buy_quote_volume = format_decimal(bar.taker_buy_quote_volume, ps + qs)
    return message


# Field order of an accumulator in snapshots (one row per bar, see TimeframeBook.to_dict); a
# saved row adds the price and quantity scale its values are at (ROW_FIELDS).
ACCUMULATOR_FIELDS: tuple[str, ...] = (
    "open_time_ns",
    "open",
    "high",
    "low",
    "close",
    "open_event_ns",
    "open_trade_id",
    "close_event_ns",
    "close_trade_id",
    "volume",
    "quote_volume",
    "trade_count",
    "has_data",
    "from_source",
    "revision",
    "duplicate_trades",
    "out_of_order_trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
ROW_FIELDS: tuple[str, ...] = (*ACCUMULATOR_FIELDS, "price_scale", "quantity_scale")
# One C call reads every field: a whole market's minute snapshots 2,000 instruments x 6 books.
_ROW_VALUES = attrgetter(*ACCUMULATOR_FIELDS)
_PRICES = (1, 2, 3, 4)  # open, high, low, close
_VOLUME, _QUOTE_VOLUME = 9, 10
_TAKER_BUY, _TAKER_BUY_QUOTE = 17, 18


def rescale_row(row: list[Any], price_factor: int, quantity_factor: int) -> list[Any]:
    """Return a saved row with its prices and volumes multiplied up to finer scales."""
    scaled = list(row)
    for index in _PRICES:
        scaled[index] *= price_factor
    scaled[_VOLUME] *= quantity_factor
    scaled[_QUOTE_VOLUME] *= price_factor * quantity_factor
    if scaled[_TAKER_BUY] is not None:
        scaled[_TAKER_BUY] *= quantity_factor
    if scaled[_TAKER_BUY_QUOTE] is not None:
        scaled[_TAKER_BUY_QUOTE] *= price_factor * quantity_factor
    return scaled


class BarAccumulator:
    """A bar being built: OHLCV plus the (event time, trade id) keys of its open and close trades.

    Keeping the order keys makes merging commutative, so trades that arrive out of order within
    the allowed lateness, and late trades applied as revisions, give the same bar. A bar without
    data is a flat placeholder (O=H=L=C=previous close, volume 0) that roll-ups never use. Values
    are mantissas at the scales of the owning instrument (see the module docstring).
    """

    __slots__ = ACCUMULATOR_FIELDS

    def __init__(
        self,
        open_time_ns: int,
        open_: int,
        high: int,
        low: int,
        close: int,
        open_event_ns: int,
        open_trade_id: int,
        close_event_ns: int,
        close_trade_id: int,
        volume: int,
        quote_volume: int,
        trade_count: int,
        has_data: bool = True,
        from_source: bool = False,
        revision: int = NEVER_FINAL,
        duplicate_trades: int = 0,
        out_of_order_trades: int = 0,
        taker_buy_volume: int | None = None,
        taker_buy_quote_volume: int | None = None,
    ) -> None:
        self.open_time_ns = open_time_ns
        self.open = open_
        self.high = high
        self.low = low
        self.close = close
        self.open_event_ns = open_event_ns
        self.open_trade_id = open_trade_id
        self.close_event_ns = close_event_ns
        self.close_trade_id = close_trade_id
        self.volume = volume
        self.quote_volume = quote_volume
        self.trade_count = trade_count
        self.has_data = has_data
        self.from_source = from_source
        # NEVER_FINAL until the first final version is emitted, then 0, 1, ... per revision.
        self.revision = revision
        self.duplicate_trades = duplicate_trades
        self.out_of_order_trades = out_of_order_trades
        self.taker_buy_volume = taker_buy_volume
        self.taker_buy_quote_volume = taker_buy_quote_volume

    @classmethod
    def flat(cls, open_time_ns: int, close: int) -> BarAccumulator:
        """Return a flat placeholder bar at the previous close (no trades: every volume is 0)."""
        return cls(open_time_ns, close, close, close, close, 0, 0, 0, 0, 0, 0, 0, False, False,
                   NEVER_FINAL, 0, 0, 0, 0)  # fmt: skip

    def set_flat(self, close: int) -> None:
        """Move a flat placeholder to a new previous close."""
        self.open = self.high = self.low = self.close = close

    def rescale(self, price_factor: int, quantity_factor: int) -> None:
        """Multiply prices and volumes up to finer scales (the instrument's scale grew)."""
        self.open *= price_factor
        self.high *= price_factor
        self.low *= price_factor
        self.close *= price_factor
        quote_factor = price_factor * quantity_factor
        self.volume *= quantity_factor
        self.quote_volume *= quote_factor
        if self.taker_buy_volume is not None:
            self.taker_buy_volume *= quantity_factor
        if self.taker_buy_quote_volume is not None:
            self.taker_buy_quote_volume *= quote_factor

    def merge(
        self,
        open_: int,
        high: int,
        low: int,
        close: int,
        open_event_ns: int,
        open_trade_id: int,
        close_event_ns: int,
        close_trade_id: int,
        volume: int,
        quote_volume: int,
        trade_count: int,
        from_source: bool,
        duplicate_trades: int = 0,
        out_of_order_trades: int = 0,
        taker_buy_volume: int | None = None,
        taker_buy_quote_volume: int | None = None,
    ) -> None:
        """Merge the aggregate of more trades (or a sub-bar) into this bar."""
        self.duplicate_trades += duplicate_trades
        self.out_of_order_trades += out_of_order_trades
        if not self.has_data:
            self.open, self.high, self.low, self.close = open_, high, low, close
            self.open_event_ns, self.open_trade_id = open_event_ns, open_trade_id
            self.close_event_ns, self.close_trade_id = close_event_ns, close_trade_id
            self.volume, self.quote_volume, self.trade_count = volume, quote_volume, trade_count
            self.taker_buy_volume = taker_buy_volume
            self.taker_buy_quote_volume = taker_buy_quote_volume
            self.has_data = True
            self.from_source = from_source
            return
        if (open_event_ns, open_trade_id) < (self.open_event_ns, self.open_trade_id):
            self.open, self.open_event_ns, self.open_trade_id = open_, open_event_ns, open_trade_id
        if (close_event_ns, close_trade_id) > (self.close_event_ns, self.close_trade_id):
            self.close = close
            self.close_event_ns, self.close_trade_id = close_event_ns, close_trade_id
        if high > self.high:
            self.high = high
        if low < self.low:
            self.low = low
        self.volume += volume
        self.quote_volume += quote_volume
        self.trade_count += trade_count
        # Unknown (None) absorbs known; inline, as this runs per minute and timeframe.
        held = self.taker_buy_volume
        self.taker_buy_volume = (
            None if held is None or taker_buy_volume is None else held + taker_buy_volume
        )
        held = self.taker_buy_quote_volume
        self.taker_buy_quote_volume = (
            None
            if held is None or taker_buy_quote_volume is None
            else held + taker_buy_quote_volume
        )
        self.from_source = self.from_source or from_source

    def merge_bar(self, other: BarAccumulator) -> None:
        """Merge another bar with data into this one (roll-up)."""
        self.merge(
            other.open,
            other.high,
            other.low,
            other.close,
            other.open_event_ns,
            other.open_trade_id,
            other.close_event_ns,
            other.close_trade_id,
            other.volume,
            other.quote_volume,
            other.trade_count,
            other.from_source,
            other.duplicate_trades,
            other.out_of_order_trades,
            other.taker_buy_volume,
            other.taker_buy_quote_volume,
        )

    def add_duplicates(self, count: int) -> None:
        """Count trades of this bar's span that were received again and dropped."""
        self.duplicate_trades += count

    def to_update(
        self,
        exchange: int,
        symbol: str,
        timeframe: TimeframeSpec,
        final: bool,
        price_scale: int,
        quantity_scale: int,
    ) -> BarUpdate:
        """Return the emitted form of this bar at the instrument's scales."""
        return BarUpdate(
            exchange,
            symbol,
            timeframe,
            self.open_time_ns,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote_volume,
            self.trade_count,
            self.vwap(price_scale),
            final,
            max(self.revision, 0) if final else 0,
            self.duplicate_trades,
            self.out_of_order_trades,
            self.taker_buy_volume,
            self.taker_buy_quote_volume,
            price_scale,
            quantity_scale,
        )

    def vwap(self, price_scale: int) -> float:
        """The volume-weighted average price (the close for a bar without volume)."""
        unit = power_of_ten(price_scale)
        # quote (scale ps+qs) / volume (scale qs) is a price at scale ps; one int division
        # rounds once, correctly, for the statistic VWAP is.
        return self.quote_volume / (self.volume * unit) if self.volume > 0 else self.close / unit

    def forming_message(
        self, exchange: int, symbol: str, timeframe: int, price_scale: int, quantity_scale: int
    ) -> market_pb2.Bar:
        """The bar's forming message as it is now: `to_update(...).to_proto()` without the update."""
        return bar_message(
            self,
            exchange,
            symbol,
            timeframe,
            self.vwap(price_scale),
            False,
            0,
            0,
            price_scale,
            quantity_scale,
        )

    def as_row(self, price_scale: int, quantity_scale: int) -> list[Any]:
        """Return the fields in ROW_FIELDS order (for snapshots): values, then their scales."""
        return [*_ROW_VALUES(self), price_scale, quantity_scale]

    @classmethod
    def from_row(cls, row: list[Any]) -> BarAccumulator:
        """Rebuild an accumulator from the values of an `as_row` row (the caller handles scales)."""
        (open_time, o, h, lo, c, oe, oid, ce, cid, v, qv, n, has_data, src, rev) = row[:15]
        duplicates, out_of_order, taker_buy, taker_buy_quote = row[15:19]
        return cls(
            int(open_time),
            int(o),
            int(h),
            int(lo),
            int(c),
            int(oe),
            int(oid),
            int(ce),
            int(cid),
            int(v),
            int(qv),
            int(n),
            bool(has_data),
            bool(src),
            int(rev),
            int(duplicates),
            int(out_of_order),
            None if taker_buy is None else int(taker_buy),
            None if taker_buy_quote is None else int(taker_buy_quote),
        )
