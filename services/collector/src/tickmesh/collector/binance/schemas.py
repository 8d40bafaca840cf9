"""Binance wire payloads as frozen msgspec Structs, one per message shape.

Field names are Binance's own single letters so msgspec decodes without renaming.
Prices and quantities arrive as JSON strings; the decoders are built with
``strict=False`` so msgspec converts them to floats while decoding (correctly
rounded, and checked against ``float(str)`` in the tests), which avoids a
Python-level ``float()`` call per field on the hot path.
"""

from __future__ import annotations

import msgspec

from tickmesh.collector.binance.columns import SymbolTradesBuilder
from tickmesh.v1 import market_pb2

SIDE_BUY = market_pb2.AGGRESSOR_SIDE_BUY
SIDE_SELL = market_pb2.AGGRESSOR_SIDE_SELL
TYPE_MARKET = market_pb2.TRADE_TYPE_MARKET

# Binance USD-M "X" values; anything unlisted is some other non-market execution.
FUTURES_TRADE_TYPES: dict[str, int] = {
    "MARKET": market_pb2.TRADE_TYPE_MARKET,
    "INSURANCE_FUND": market_pb2.TRADE_TYPE_INSURANCE_FUND,
    "ADL": market_pb2.TRADE_TYPE_ADL,
    "NA": market_pb2.TRADE_TYPE_OTHER,
}

_INF = float("inf")
_MS_TO_NS = 1_000_000


class InvalidTradeError(ValueError):
    """A trade payload that decoded but carries impossible values."""


def check_price_quantity(price: float, quantity: float) -> None:
    """Raise InvalidTradeError unless price and quantity are finite and positive."""
    # Chained comparisons also reject NaN, which compares false with everything.
    if not 0.0 < price < _INF:
        raise InvalidTradeError(f"price {price!r} is not a positive finite number")
    if not 0.0 < quantity < _INF:
        raise InvalidTradeError(f"quantity {quantity!r} is not a positive finite number")


class CombinedStreamMessage(msgspec.Struct, frozen=True):
    """The combined-stream wrapper {"stream": name, "data": payload}; data stays raw."""

    stream: str
    data: msgspec.Raw


class FrameHead(msgspec.Struct, frozen=True):
    """Just enough of any frame to route it: combined wrapper, raw event, or control reply."""

    # msgspec.Raw cannot sit in a union with None, so "absent" is an empty Raw.
    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    e: str | None = None
    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw()
    error: msgspec.Raw = msgspec.Raw()


class SpotTrade(msgspec.Struct, frozen=True):
    """Spot @trade event; the 2023 format also carries buyer/seller order ids b and a."""

    e: str
    E: int
    s: str
    t: int
    p: float
    q: float
    T: int
    m: bool
    M: bool = True
    b: int | None = None
    a: int | None = None

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns (spot trades are market trades)."""
        check_price_quantity(self.p, self.q)
        builder.append(
            self.t,
            self.p,
            self.q,
            SIDE_SELL if self.m else SIDE_BUY,
            self.T * _MS_TO_NS,
            receive_time_ns,
            TYPE_MARKET,
            1,
        )


class FuturesTrade(msgspec.Struct, frozen=True):
    """USD-M @trade event; X is MARKET, INSURANCE_FUND, ADL or NA."""

    e: str
    E: int
    T: int
    s: str
    t: int
    p: float
    q: float
    X: str
    m: bool

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns with its execution type."""
        check_price_quantity(self.p, self.q)
        builder.append(
            self.t,
            self.p,
            self.q,
            SIDE_SELL if self.m else SIDE_BUY,
            self.T * _MS_TO_NS,
            receive_time_ns,
            FUTURES_TRADE_TYPES.get(self.X, market_pb2.TRADE_TYPE_OTHER),
            1,
        )


class AggTrade(msgspec.Struct, frozen=True):
    """Spot or USD-M @aggTrade event: trades f..l of one taker order at one price."""

    e: str
    E: int
    s: str
    a: int
    p: float
    q: float
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    M: bool | None = None

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this aggregate to a symbol's columns, counting the trades it covers."""
        check_price_quantity(self.p, self.q)
        count = self.l - self.f + 1
        if count < 1:
            raise InvalidTradeError(f"aggTrade last id {self.l} precedes first id {self.f}")
        builder.append(
            self.a,
            self.p,
            self.q,
            SIDE_SELL if self.m else SIDE_BUY,
            self.T * _MS_TO_NS,
            receive_time_ns,
            TYPE_MARKET,
            count,
        )


class RestSpotTrade(msgspec.Struct, frozen=True):
    """A row of GET /api/v3/historicalTrades (and /api/v3/trades)."""

    id: int
    price: float
    qty: float
    time: int
    isBuyerMaker: bool  # noqa: N815 - Binance's field name
    quoteQty: float | None = None  # noqa: N815
    isBestMatch: bool | None = None  # noqa: N815

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns."""
        _append_rest_trade(self, builder, receive_time_ns)


class RestFuturesTrade(msgspec.Struct, frozen=True):
    """A row of GET /fapi/v1/historicalTrades; Binance returns market trades only."""

    id: int
    price: float
    qty: float
    time: int
    isBuyerMaker: bool  # noqa: N815
    quoteQty: float | None = None  # noqa: N815
    isRPITrade: bool | None = None  # noqa: N815

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns."""
        _append_rest_trade(self, builder, receive_time_ns)


class RestAggTrade(msgspec.Struct, frozen=True):
    """A row of GET /api/v3/aggTrades or /fapi/v1/aggTrades."""

    a: int
    p: float
    q: float
    f: int
    l: int  # noqa: E741
    T: int
    m: bool
    M: bool | None = None

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this aggregate to a symbol's columns, counting the trades it covers."""
        check_price_quantity(self.p, self.q)
        count = self.l - self.f + 1
        if count < 1:
            raise InvalidTradeError(f"aggTrade last id {self.l} precedes first id {self.f}")
        builder.append(
            self.a,
            self.p,
            self.q,
            SIDE_SELL if self.m else SIDE_BUY,
            self.T * _MS_TO_NS,
            receive_time_ns,
            TYPE_MARKET,
            count,
        )


def _append_rest_trade(
    trade: RestSpotTrade | RestFuturesTrade, builder: SymbolTradesBuilder, receive_time_ns: int
) -> None:
    """Spot and USD-M historicalTrades rows carry the same fields: one way to append them."""
    check_price_quantity(trade.price, trade.qty)
    builder.append(
        trade.id,
        trade.price,
        trade.qty,
        SIDE_SELL if trade.isBuyerMaker else SIDE_BUY,
        trade.time * _MS_TO_NS,
        receive_time_ns,
        TYPE_MARKET,
        1,
    )
