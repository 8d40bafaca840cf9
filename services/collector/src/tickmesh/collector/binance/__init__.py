"""Binance adapter: wire payloads, the stream decoder and columnar trade builders."""

from tickmesh.collector.binance.columns import SymbolTradesBuilder
from tickmesh.collector.binance.decoder import (
    BinanceStreamDecoder,
    DecodeError,
    DecodeErrorKind,
    DecodeStats,
)
from tickmesh.collector.binance.parse import (
    RestPageError,
    parse_rest_agg_trades,
    parse_rest_historical_trades,
)

__all__ = [
    "BinanceStreamDecoder",
    "DecodeError",
    "DecodeErrorKind",
    "DecodeStats",
    "RestPageError",
    "SymbolTradesBuilder",
    "parse_rest_agg_trades",
    "parse_rest_historical_trades",
]
