"""Parse Binance REST trade pages (historicalTrades, aggTrades) into SymbolTrades.

Backfill after a reconnect reads these pages; a page is all-or-nothing (a bad
row raises ``RestPageError``) because a silently shortened page would leave a
hole the collector believes it has filled.
"""

from __future__ import annotations

import time

import msgspec

from tickmesh.collector.binance.columns import SymbolTradesBuilder
from tickmesh.collector.binance.schemas import (
    InvalidTradeError,
    RestAggTrade,
    RestFuturesTrade,
    RestSpotTrade,
)
from tickmesh.v1 import market_pb2

_spot_trades = msgspec.json.Decoder(list[RestSpotTrade], strict=False)
_futures_trades = msgspec.json.Decoder(list[RestFuturesTrade], strict=False)
_agg_trades = msgspec.json.Decoder(list[RestAggTrade], strict=False)


class RestPageError(ValueError):
    """A REST trade page that is not valid JSON or holds an invalid row."""


# A page is the raw body, or what a client such as python-binance already decoded.
RestPage = bytes | str | list[dict[str, object]]


def _spot_rows(page: RestPage) -> list[RestSpotTrade]:
    if isinstance(page, bytes | str):
        return _spot_trades.decode(page)
    return msgspec.convert(page, list[RestSpotTrade], strict=False)


def _futures_rows(page: RestPage) -> list[RestFuturesTrade]:
    if isinstance(page, bytes | str):
        return _futures_trades.decode(page)
    return msgspec.convert(page, list[RestFuturesTrade], strict=False)


def _agg_rows(page: RestPage) -> list[RestAggTrade]:
    if isinstance(page, bytes | str):
        return _agg_trades.decode(page)
    return msgspec.convert(page, list[RestAggTrade], strict=False)


def parse_rest_historical_trades(
    page: RestPage,
    exchange: market_pb2.Exchange.ValueType,
    symbol: str,
    receive_time_ns: int | None = None,
) -> SymbolTradesBuilder:
    """Parse a historicalTrades page (spot or USD-M by exchange) into a builder."""
    received = time.time_ns() if receive_time_ns is None else receive_time_ns
    builder = SymbolTradesBuilder(exchange, symbol)
    try:
        if exchange == market_pb2.EXCHANGE_BINANCE_USDM:
            for futures_row in _futures_rows(page):
                futures_row.parse_to_columns(builder, received)
        else:
            for spot_row in _spot_rows(page):
                spot_row.parse_to_columns(builder, received)
    except (msgspec.DecodeError, InvalidTradeError, OverflowError) as exc:
        raise RestPageError(f"historicalTrades page for {symbol}: {exc}") from exc
    return builder


def parse_rest_agg_trades(
    page: RestPage,
    exchange: market_pb2.Exchange.ValueType,
    symbol: str,
    receive_time_ns: int | None = None,
) -> SymbolTradesBuilder:
    """Parse an aggTrades page into a builder whose trade_counts are l - f + 1."""
    received = time.time_ns() if receive_time_ns is None else receive_time_ns
    builder = SymbolTradesBuilder(exchange, symbol)
    try:
        for row in _agg_rows(page):
            row.parse_to_columns(builder, received)
    except (msgspec.DecodeError, InvalidTradeError, OverflowError) as exc:
        raise RestPageError(f"aggTrades page for {symbol}: {exc}") from exc
    return builder
