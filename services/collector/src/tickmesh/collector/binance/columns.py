"""Columnar per-symbol trade builder that becomes one ``SymbolTrades`` message.

Trades are appended into typed ``array`` columns (machine ints and doubles, no
per-trade Python objects kept) and turned into protobuf once per batch.
"""

from __future__ import annotations

from array import array
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from tickmesh.v1 import market_pb2


class SymbolTradesBuilder:
    """Accumulates one symbol's trades column by column."""

    __slots__ = (
        "_counts",
        "_event_ns",
        "_has_aggregates",
        "_ids",
        "_prices",
        "_quantities",
        "_receive_ns",
        "_sides",
        "_types",
        "exchange",
        "symbol",
    )

    def __init__(self, exchange: market_pb2.Exchange.ValueType, symbol: str) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self._ids = array("q")
        self._prices = array("d")
        self._quantities = array("d")
        self._sides = array("b")
        self._event_ns = array("q")
        self._receive_ns = array("q")
        self._types = array("b")
        self._counts = array("I")
        self._has_aggregates = False

    def __len__(self) -> int:
        return len(self._ids)

    def append(
        self,
        trade_id: int,
        price: float,
        quantity: float,
        side: int,
        event_time_ns: int,
        receive_time_ns: int,
        trade_type: int,
        trade_count: int,
    ) -> None:
        """Append one trade (or one aggregate of trade_count trades); all columns or none."""
        try:
            self._ids.append(trade_id)
            self._prices.append(price)
            self._quantities.append(quantity)
            self._sides.append(side)
            self._event_ns.append(event_time_ns)
            self._receive_ns.append(receive_time_ns)
            self._types.append(trade_type)
            self._counts.append(trade_count)
        except (OverflowError, TypeError):
            # A value that does not fit its column (e.g. an id beyond int64) must not
            # leave the columns with different lengths.
            self._truncate(len(self._counts))
            raise
        if trade_count != 1:
            self._has_aggregates = True

    def _truncate(self, length: int) -> None:
        for column in self._columns():
            del column[length:]

    def to_proto(self) -> market_pb2.SymbolTrades:
        """Build the SymbolTrades message; trade_counts is left empty when all are 1."""
        # The generated stubs type enum columns as NewType ints; the arrays hold those ints.
        sides = cast("Any", self._sides)
        types = cast("Any", self._types)
        return market_pb2.SymbolTrades(
            exchange=self.exchange,
            symbol=self.symbol,
            trade_ids=self._ids,
            prices=self._prices,
            quantities=self._quantities,
            sides=sides,
            event_time_ns=self._event_ns,
            receive_time_ns=self._receive_ns,
            types=types,
            trade_counts=self._counts if self._has_aggregates else (),
        )

    def trade_ids(self) -> npt.NDArray[np.int64]:
        """A numpy copy of the trade id column."""
        # A copy, because a live buffer export would forbid the array from growing.
        return np.frombuffer(self._ids, dtype=np.int64).copy()

    def prices(self) -> npt.NDArray[np.float64]:
        """A numpy copy of the price column."""
        return np.frombuffer(self._prices, dtype=np.float64).copy()

    def clear(self) -> None:
        """Drop every trade, keeping the symbol and exchange."""
        self._truncate(0)
        self._has_aggregates = False

    def _columns(self) -> tuple[array[Any], ...]:
        return (
            self._ids,
            self._prices,
            self._quantities,
            self._sides,
            self._event_ns,
            self._receive_ns,
            self._types,
            self._counts,
        )
