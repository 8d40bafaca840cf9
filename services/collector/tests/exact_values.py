"""Exact prices and quantities of a SymbolTrades run, as Decimals, for the tests."""

from __future__ import annotations

from decimal import Decimal

from tickmesh.core.decimals import to_decimal
from tickmesh.v2 import market_pb2


def prices(run: market_pb2.SymbolTrades) -> list[Decimal]:
    """Each trade's price, exactly (mantissa at the run's price scale)."""
    return [to_decimal(m, run.price_scale) for m in run.prices]


def quantities(run: market_pb2.SymbolTrades) -> list[Decimal]:
    """Each trade's quantity, exactly."""
    return [to_decimal(m, run.quantity_scale) for m in run.quantities]


def decimals(*texts: str) -> list[Decimal]:
    """Decimals of the given texts."""
    return [Decimal(text) for text in texts]
