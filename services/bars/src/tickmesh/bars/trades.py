"""Engine inputs: columnar trade runs and source bars, plus the records of what the engine rejected."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from tickmesh.core.timeframes import NS_PER_MINUTE
from tickmesh.v1 import market_pb2

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class TradeRunError(ValueError):
    """A trade run whose columns do not line up; the server maps it to INVALID_ARGUMENT."""


class QuarantineReason(IntEnum):
    """Why a trade or source bar was quarantined instead of built into bars."""

    INVALID_PRICE = 1
    INVALID_QUANTITY = 2
    EVENT_TIME_IN_FUTURE = 3
    UNSUPPORTED_TIMEFRAME = 4
    MISALIGNED_OPEN_TIME = 5
    INCONSISTENT_OHLC = 6


@dataclass(frozen=True, slots=True, eq=False)
class TradeRun:
    """Trades of one (exchange, symbol) as columns; `types`/`trade_counts` None mean market / one each."""

    exchange: int
    symbol: str
    trade_ids: IntArray
    prices: FloatArray
    quantities: FloatArray
    event_time_ns: IntArray
    types: npt.NDArray[np.int32] | None = None
    trade_counts: IntArray | None = None

    @classmethod
    def from_columns(
        cls,
        exchange: int,
        symbol: str,
        trade_ids: npt.ArrayLike,
        prices: npt.ArrayLike,
        quantities: npt.ArrayLike,
        event_time_ns: npt.ArrayLike,
        types: npt.ArrayLike | None = None,
        trade_counts: npt.ArrayLike | None = None,
    ) -> TradeRun:
        """Build a run from array-likes, coercing dtypes; TradeRunError if lengths differ."""
        ids: IntArray = np.asarray(trade_ids, dtype=np.int64)
        price_column: FloatArray = np.asarray(prices, dtype=np.float64)
        quantity_column: FloatArray = np.asarray(quantities, dtype=np.float64)
        time_column: IntArray = np.asarray(event_time_ns, dtype=np.int64)
        type_column = None if types is None else np.asarray(types, dtype=np.int32)
        count_column = None if trade_counts is None else np.asarray(trade_counts, dtype=np.int64)
        # The proto says an empty optional column means "all market" / "one trade each".
        if type_column is not None and type_column.size == 0 and ids.size > 0:
            type_column = None
        if count_column is not None and count_column.size == 0 and ids.size > 0:
            count_column = None
        columns: dict[str, npt.NDArray[np.generic] | None] = {
            "prices": price_column,
            "quantities": quantity_column,
            "event_time_ns": time_column,
            "types": type_column,
            "trade_counts": count_column,
        }
        for name, column in columns.items():
            if column is not None and column.shape != ids.shape:
                raise TradeRunError(
                    f"{symbol}: column {name} has shape {column.shape}, trade_ids {ids.shape}"
                )
        if ids.ndim != 1:
            raise TradeRunError(f"{symbol}: trade columns must be one-dimensional")
        return cls(
            exchange,
            symbol,
            ids,
            price_column,
            quantity_column,
            time_column,
            type_column,
            count_column,
        )

    @classmethod
    def from_proto(cls, message: market_pb2.SymbolTrades) -> TradeRun:
        """Build a run from a `SymbolTrades` message."""
        return cls.from_columns(
            int(message.exchange),
            message.symbol,
            np.fromiter(message.trade_ids, dtype=np.int64, count=len(message.trade_ids)),
            np.fromiter(message.prices, dtype=np.float64, count=len(message.prices)),
            np.fromiter(message.quantities, dtype=np.float64, count=len(message.quantities)),
            np.fromiter(message.event_time_ns, dtype=np.int64, count=len(message.event_time_ns)),
            np.fromiter(message.types, dtype=np.int32, count=len(message.types)),
            np.fromiter(message.trade_counts, dtype=np.int64, count=len(message.trade_counts)),
        )

    def __len__(self) -> int:
        return int(self.trade_ids.size)

    def take(self, index: npt.NDArray[np.intp]) -> TradeRun:
        """Return the trades at `index` (positions in this run) as a new run."""
        return TradeRun(
            self.exchange,
            self.symbol,
            self.trade_ids[index],
            self.prices[index],
            self.quantities[index],
            self.event_time_ns[index],
            None if self.types is None else self.types[index],
            None if self.trade_counts is None else self.trade_counts[index],
        )


@dataclass(frozen=True, slots=True)
class QuarantinedTrades:
    """Trades kept out of bars, with one reason per trade."""

    trades: TradeRun
    reasons: npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class SourceBar:
    """A bar published by a source without trades (Yahoo); only 1m source bars are rolled up."""

    exchange: int
    symbol: str
    timeframe: int
    open_time_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @classmethod
    def from_proto(cls, message: market_pb2.SourceBar) -> SourceBar:
        """Build a source bar from a `SourceBar` message."""
        return cls(
            int(message.exchange),
            message.symbol,
            int(message.timeframe),
            message.open_time_ns,
            message.open,
            message.high,
            message.low,
            message.close,
            message.volume,
        )

    def problem(self) -> QuarantineReason | None:
        """Return why this bar must be quarantined, or None when it is sound."""
        if self.timeframe != market_pb2.TIMEFRAME_1M:
            return QuarantineReason.UNSUPPORTED_TIMEFRAME
        if self.open_time_ns % NS_PER_MINUTE != 0:
            return QuarantineReason.MISALIGNED_OPEN_TIME
        prices = (self.open, self.high, self.low, self.close)
        if not all(math.isfinite(price) and price > 0 for price in prices):
            return QuarantineReason.INVALID_PRICE
        if not (math.isfinite(self.volume) and self.volume >= 0):
            return QuarantineReason.INVALID_QUANTITY
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            return QuarantineReason.INCONSISTENT_OHLC
        return None
