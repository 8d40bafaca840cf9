"""Exact kline comparisons for the bar engine tests: fixture strings and bars as Decimals."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.trades import TradeRun
from tickmesh.core.decimals import parse_decimal, power_of_ten
from tickmesh.core.fixtures import BINANCE_KLINE_FIELDS

# open_time_ns -> {kline field: exact Decimal (count as int)}: open, high, low, close, volume,
# quote_volume, count, taker_buy_volume, taker_buy_quote_volume, as Binance wrote them.
FuturesKlines = dict[int, dict[str, Decimal]]
# open_time_ns -> (open, high, low, close, volume): ccxt's floats, read as Decimal(repr(float)).
OhlcvKlines = dict[int, tuple[Decimal, Decimal, Decimal, Decimal, Decimal]]
KLINE_FIELDS = BINANCE_KLINE_FIELDS


def exact_column(texts: Sequence[str], field: str) -> tuple[list[int], int]:
    """Parse decimal strings exactly into mantissas at one common scale (the finest)."""
    parsed = [parse_decimal(text, field) for text in texts]
    scale = max(s for _, s in parsed)
    return [m * power_of_ten(scale - s) for m, s in parsed], scale


def bar_fields(bar: BarUpdate) -> dict[str, Decimal]:
    """A bar's kline fields as the APIs serve them: Decimal of each decimal string, exactly."""
    message = bar.to_proto()
    fields = {name: Decimal(getattr(message, name)) for name in KLINE_FIELDS if name != "count"}
    fields["count"] = Decimal(message.trade_count)
    if not message.HasField("taker_buy_volume"):
        del fields["taker_buy_volume"], fields["taker_buy_quote_volume"]
    return fields


def whole(values: Sequence[float | int]) -> list[int]:
    """Mantissas at scale 0 of whole-number test prices and quantities (100.0 is 100)."""
    converted = [int(value) for value in values]
    assert converted == list(values), f"{values} are not whole numbers"
    return converted


def decimal_run(
    exchange: int,
    symbol: str,
    ids: Sequence[int],
    prices: Sequence[str],
    quantities: Sequence[str],
    times: Sequence[int],
    **columns: Any,
) -> TradeRun:
    """A run from decimal strings, parsed exactly at the finest scale of each column."""
    price_column, price_scale = exact_column(prices, "price")
    quantity_column, quantity_scale = exact_column(quantities, "quantity")
    return TradeRun.from_columns(
        exchange,
        symbol,
        ids,
        price_column,
        quantity_column,
        times,
        price_scale=price_scale,
        quantity_scale=quantity_scale,
        **columns,
    )
