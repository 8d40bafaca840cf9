"""One bar as it is built (a mergeable accumulator) and as it is emitted (a frozen update)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tickmesh.core.timeframes import TimeframeSpec
from tickmesh.v1 import market_pb2

# Order keys of source bars, which have no trades: before and after every real trade id.
SOURCE_OPEN_TRADE_ID = -(2**63)
SOURCE_CLOSE_TRADE_ID = 2**63 - 1
NEVER_FINAL = -1


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """One emitted bar: forming (final False) or final with its revision (0 for the first)."""

    exchange: int
    symbol: str
    timeframe: TimeframeSpec
    open_time_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trade_count: int
    vwap: float
    final: bool
    revision: int
    # Trades of the bar's minutes dropped as duplicates, and accepted after a later trade.
    duplicate_trades: int = 0
    out_of_order_trades: int = 0

    @property
    def close_time_ns(self) -> int:
        """Return the first nanosecond after the bar."""
        return self.open_time_ns + self.timeframe.duration_ns

    def to_proto(self, change_id: int = 0) -> market_pb2.Bar:
        """Return the bar as a `tickmesh.v1.Bar`; the server assigns `change_id` when persisting."""
        return market_pb2.Bar(
            symbol=self.symbol,
            exchange=market_pb2.Exchange.ValueType(self.exchange),
            timeframe=market_pb2.Timeframe.ValueType(self.timeframe.proto),
            open_time_ns=self.open_time_ns,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            quote_volume=self.quote_volume,
            trade_count=self.trade_count,
            vwap=self.vwap,
            final=self.final,
            revision=self.revision,
            change_id=change_id,
            duplicate_trades=self.duplicate_trades,
            out_of_order_trades=self.out_of_order_trades,
        )


# Field order of an accumulator in snapshots (one row per bar, see TimeframeBook.to_dict).
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
)
# Rows saved before the two trade counters existed end at "revision".
_LEGACY_ROW_LENGTH = 15


class BarAccumulator:
    """A bar being built: OHLCV plus the (event time, trade id) keys of its open and close trades.

    Keeping the order keys makes merging commutative, so trades that arrive out of order within
    the allowed lateness, and late trades applied as revisions, give the same bar. A bar without
    data is a flat placeholder (O=H=L=C=previous close) that roll-ups never use.
    """

    __slots__ = ACCUMULATOR_FIELDS

    def __init__(
        self,
        open_time_ns: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        open_event_ns: int,
        open_trade_id: int,
        close_event_ns: int,
        close_trade_id: int,
        volume: float,
        quote_volume: float,
        trade_count: int,
        has_data: bool = True,
        from_source: bool = False,
        revision: int = NEVER_FINAL,
        duplicate_trades: int = 0,
        out_of_order_trades: int = 0,
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

    @classmethod
    def flat(cls, open_time_ns: int, close: float) -> BarAccumulator:
        """Return a flat placeholder bar at the previous close."""
        return cls(open_time_ns, close, close, close, close, 0, 0, 0, 0, 0.0, 0.0, 0, False)

    def set_flat(self, close: float) -> None:
        """Move a flat placeholder to a new previous close."""
        self.open = self.high = self.low = self.close = close

    def merge(
        self,
        open_: float,
        high: float,
        low: float,
        close: float,
        open_event_ns: int,
        open_trade_id: int,
        close_event_ns: int,
        close_trade_id: int,
        volume: float,
        quote_volume: float,
        trade_count: int,
        from_source: bool,
        duplicate_trades: int = 0,
        out_of_order_trades: int = 0,
    ) -> None:
        """Merge the aggregate of more trades (or a sub-bar) into this bar."""
        self.duplicate_trades += duplicate_trades
        self.out_of_order_trades += out_of_order_trades
        if not self.has_data:
            self.open, self.high, self.low, self.close = open_, high, low, close
            self.open_event_ns, self.open_trade_id = open_event_ns, open_trade_id
            self.close_event_ns, self.close_trade_id = close_event_ns, close_trade_id
            self.volume, self.quote_volume, self.trade_count = volume, quote_volume, trade_count
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
        )

    def add_duplicates(self, count: int) -> None:
        """Count trades of this bar's span that were received again and dropped."""
        self.duplicate_trades += count

    def to_update(
        self, exchange: int, symbol: str, timeframe: TimeframeSpec, final: bool
    ) -> BarUpdate:
        """Return the emitted form of this bar."""
        vwap = self.quote_volume / self.volume if self.volume > 0 else self.close
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
            vwap,
            final,
            max(self.revision, 0) if final else 0,
            self.duplicate_trades,
            self.out_of_order_trades,
        )

    def as_row(self) -> list[Any]:
        """Return the fields in ACCUMULATOR_FIELDS order (for snapshots)."""
        return [getattr(self, name) for name in ACCUMULATOR_FIELDS]

    @classmethod
    def from_row(cls, row: list[Any]) -> BarAccumulator:
        """Rebuild an accumulator from `as_row` output (or a row saved before the trade counters)."""
        (open_time, o, h, lo, c, oe, oid, ce, cid, v, qv, n, has_data, src, rev) = row[
            :_LEGACY_ROW_LENGTH
        ]
        duplicates, out_of_order = row[_LEGACY_ROW_LENGTH:] or (0, 0)
        return cls(
            int(open_time),
            float(o),
            float(h),
            float(lo),
            float(c),
            int(oe),
            int(oid),
            int(ce),
            int(cid),
            float(v),
            float(qv),
            int(n),
            bool(has_data),
            bool(src),
            int(rev),
            int(duplicates),
            int(out_of_order),
        )
