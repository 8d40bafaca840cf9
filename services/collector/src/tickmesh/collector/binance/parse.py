"""Parse Binance REST trade pages (historicalTrades, aggTrades) into SymbolTrades.

Backfill after a reconnect reads these pages; a page is all-or-nothing (a bad
row raises ``RestPageError``) because a silently shortened page would leave a
hole the collector believes it has filled. The one exception is a row finer than the
instrument's tick or step size: the live stream refused the same trade, so it is left
out and reported in `refused` (its id is covered by the page, so it is never fetched again).
"""

from __future__ import annotations

import time

import msgspec

from tickmesh.collector.binance.columns import (
    InvalidTradeError,
    OffIncrementError,
    SymbolTradesBuilder,
)
from tickmesh.collector.binance.schemas import (
    RestAggTrade,
    RestFuturesTrade,
    RestSpotTrade,
)
from tickmesh.core.decimals import DecimalValueError
from tickmesh.v2 import market_pb2

# Decimals of an instrument's tick size and step size; None where unknown.
Increments = tuple[int | None, int | None]
_UNKNOWN: Increments = (None, None)

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


def _append_rows(
    rows: list[RestSpotTrade] | list[RestFuturesTrade] | list[RestAggTrade],
    builder: SymbolTradesBuilder,
    received: int,
    refused: list[OffIncrementError] | None,
) -> None:
    for row in rows:
        try:
            row.parse_to_columns(builder, received)
        except OffIncrementError as error:
            if refused is not None:
                refused.append(error)


def parse_rest_historical_trades(
    page: RestPage,
    exchange: market_pb2.Exchange.ValueType,
    symbol: str,
    receive_time_ns: int | None = None,
    *,
    increments: Increments = _UNKNOWN,
    refused: list[OffIncrementError] | None = None,
) -> SymbolTradesBuilder:
    """Parse a historicalTrades page (spot or USD-M by exchange) into a builder."""
    received = time.time_ns() if receive_time_ns is None else receive_time_ns
    builder = SymbolTradesBuilder(
        exchange,
        symbol,
        price_field="price",
        quantity_field="qty",
        max_price_scale=increments[0],
        max_quantity_scale=increments[1],
    )
    try:
        if exchange == market_pb2.EXCHANGE_BINANCE_USDM:
            _append_rows(_futures_rows(page), builder, received, refused)
        else:
            _append_rows(_spot_rows(page), builder, received, refused)
    except (msgspec.DecodeError, InvalidTradeError, DecimalValueError, OverflowError) as exc:
        raise RestPageError(f"historicalTrades page for {symbol}: {exc}") from exc
    return builder


def parse_rest_agg_trades(
    page: RestPage,
    exchange: market_pb2.Exchange.ValueType,
    symbol: str,
    receive_time_ns: int | None = None,
    *,
    increments: Increments = _UNKNOWN,
    refused: list[OffIncrementError] | None = None,
) -> SymbolTradesBuilder:
    """Parse an aggTrades page into a builder whose trade_counts are l - f + 1."""
    received = time.time_ns() if receive_time_ns is None else receive_time_ns
    builder = SymbolTradesBuilder(
        exchange, symbol, max_price_scale=increments[0], max_quantity_scale=increments[1]
    )
    try:
        _append_rows(_agg_rows(page), builder, received, refused)
    except (msgspec.DecodeError, InvalidTradeError, DecimalValueError, OverflowError) as exc:
        raise RestPageError(f"aggTrades page for {symbol}: {exc}") from exc
    return builder
