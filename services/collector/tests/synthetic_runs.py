"""Synthetic trade runs for the ingest tests: one spot symbol, flat price, one trade per ns."""

from __future__ import annotations

from tickmesh.v2 import market_pb2

EVENT_BASE_NS = 1_700_000_000_000_000_000


def flat_run(symbol: str, ids: list[int]) -> market_pb2.SymbolTrades:
    """A spot run of `ids` at price 100 and size 1 (scale 0), trade i at EVENT_BASE_NS + i."""
    return market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol=symbol,
        trade_ids=ids,
        prices=[100] * len(ids),
        quantities=[1] * len(ids),
        event_time_ns=[EVENT_BASE_NS + i for i in ids],
    )
