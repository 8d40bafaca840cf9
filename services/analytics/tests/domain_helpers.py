"""Instruments and value text shared by the analytics domain tests."""

from __future__ import annotations

from decimal import Decimal

from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2

TEST = InstrumentId(market_pb2.EXCHANGE_SIMULATOR, "TEST")
BTCUSDT_USDM = InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT")
ETHUSDT_USDM = InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, "ETHUSDT")
XRPETH_SPOT = InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, "XRPETH")


def exact_text(value: float) -> str:
    """A float as a plain decimal string that reads back as the same float (shortest repr)."""
    return format(Decimal(repr(value)), "f")
