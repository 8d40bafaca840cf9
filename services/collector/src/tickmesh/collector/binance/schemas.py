"""Binance wire payloads as frozen msgspec Structs, one per message shape.

Field names are Binance's own single letters so msgspec decodes without renaming.
Prices and quantities arrive as JSON strings and stay strings here: the column
builder parses them exactly into integer mantissas (never through a float, which
would turn "0.1" into 0.1000000000000000055...).
"""

from __future__ import annotations

import msgspec

from tickmesh.collector.binance.columns import InvalidTradeError, SymbolTradesBuilder
from tickmesh.v2 import market_pb2

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

_MS_TO_NS = 1_000_000

# Every Struct here holds only strings, numbers, booleans and raw bytes, so none can be part of
# a reference cycle: gc=False keeps the garbage collector from tracking (and sweeping) one
# object or two per frame, which decoding a frame otherwise pays for.


class CombinedStreamMessage(msgspec.Struct, frozen=True, gc=False):
    """The combined-stream wrapper {"stream": name, "data": payload}; data stays raw."""

    stream: str
    data: msgspec.Raw


class FrameHead(msgspec.Struct, frozen=True, gc=False):
    """Just enough of any frame to route it: combined wrapper, raw event, or control reply."""

    # msgspec.Raw cannot sit in a union with None, so "absent" is an empty Raw.
    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    e: str | None = None
    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw()
    error: msgspec.Raw = msgspec.Raw()


class SpotTrade(msgspec.Struct, frozen=True, tag_field="e", tag="trade", gc=False):
    """Spot @trade event; the 2023 format also carries buyer/seller order ids b and a."""

    E: int
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool
    M: bool = True
    b: int | None = None
    a: int | None = None

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns (spot trades are market trades)."""
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


class FuturesTrade(msgspec.Struct, frozen=True, tag_field="e", tag="trade", gc=False):
    """USD-M @trade event; X is MARKET, INSURANCE_FUND, ADL or NA."""

    E: int
    T: int
    s: str
    t: int
    p: str
    q: str
    X: str
    m: bool

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns with its execution type.

        X is read first: non-market executions ("NA" events carry p=0, q=0) are routed as
        their TradeType for the bar service to leave out, never refused as malformed.
        """
        trade_type = FUTURES_TRADE_TYPES.get(self.X, market_pb2.TRADE_TYPE_OTHER)
        builder.append(
            self.t,
            self.p,
            self.q,
            SIDE_SELL if self.m else SIDE_BUY,
            self.T * _MS_TO_NS,
            receive_time_ns,
            trade_type,
            1,
            trade_type == TYPE_MARKET,
        )


class AggTrade(msgspec.Struct, frozen=True, tag_field="e", tag="aggTrade", gc=False):
    """Spot or USD-M @aggTrade event: trades f..l of one taker order at one price."""

    E: int
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    M: bool | None = None

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this aggregate to a symbol's columns, counting the trades it covers."""
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


class CombinedSpotTrade(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream spot trade or aggTrade, decoded in one pass (the hot path)."""

    stream: str
    data: SpotTrade | AggTrade


class CombinedFuturesTrade(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream USD-M trade or aggTrade, decoded in one pass (the hot path)."""

    stream: str
    data: FuturesTrade | AggTrade


class RestSpotTrade(msgspec.Struct, frozen=True, gc=False):
    """A row of GET /api/v3/historicalTrades (and /api/v3/trades)."""

    id: int
    price: str
    qty: str
    time: int
    isBuyerMaker: bool  # noqa: N815 - Binance's field name
    quoteQty: str | None = None  # noqa: N815
    isBestMatch: bool | None = None  # noqa: N815

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns."""
        _append_rest_trade(self, builder, receive_time_ns)


class RestFuturesTrade(msgspec.Struct, frozen=True, gc=False):
    """A row of GET /fapi/v1/historicalTrades; Binance returns market trades only."""

    id: int
    price: str
    qty: str
    time: int
    isBuyerMaker: bool  # noqa: N815
    quoteQty: str | None = None  # noqa: N815
    isRPITrade: bool | None = None  # noqa: N815

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this trade to a symbol's columns."""
        _append_rest_trade(self, builder, receive_time_ns)


class RestAggTrade(msgspec.Struct, frozen=True, gc=False):
    """A row of GET /api/v3/aggTrades or /fapi/v1/aggTrades."""

    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741
    T: int
    m: bool
    M: bool | None = None

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None:
        """Append this aggregate to a symbol's columns, counting the trades it covers."""
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
