"""Engine state saved by the float version of the bar service (snapshot version 1), made exact.

Choice: convert, not drop. A saved head holds the forming bars of trades already acknowledged
(the 1d bar of the day so far, for one), which the collector will never resend, so dropping the
head would lose them. Prices were stored as the floats parsed from the exchange's short decimal
strings, so repr() gives the exchange's string back and the price is exact. Volumes and quote
volumes were float sums ("203.14300000000014"); they are read at 15 significant digits, the
rule PostgreSQL applied when migration 0005 turned the stored candles' doubles into numeric, so
a bar restored here and its stored candle agree. A quote volume is rounded to the price scale
plus the quantity scale. Taker-buy volumes were not kept: unknown (None).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tickmesh.bars.bar_state import rescale_row
from tickmesh.core.decimals import parse_decimal, power_of_ten

LEGACY_SNAPSHOT_VERSION = 1
_PRICES = (1, 2, 3, 4)
_VOLUME, _QUOTE_VOLUME = 9, 10
_LEGACY_LENGTH = 15  # rows saved before the two trade counters existed end at "revision"


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def legacy_price(value: float) -> tuple[int, int]:
    """Return the exact (mantissa, scale) of a price the float version stored."""
    return parse_decimal(_plain(Decimal(repr(float(value)))), "legacy price")


def _legacy_sum(value: float) -> Decimal:
    return Decimal(format(float(value), ".15g"))


def upgrade_row(row: list[Any]) -> list[Any]:
    """Convert a version-1 accumulator row (floats) into a ROW_FIELDS row at its own scales."""
    counters = list(row[_LEGACY_LENGTH:17]) or [0, 0]
    prices = [legacy_price(row[i]) for i in _PRICES]
    price_scale = max(scale for _, scale in prices)
    volume, quantity_scale = parse_decimal(_plain(_legacy_sum(row[_VOLUME])), "legacy volume")
    quote = _legacy_sum(row[_QUOTE_VOLUME]).scaleb(price_scale + quantity_scale)
    upgraded = list(row[:_LEGACY_LENGTH])
    for index, (mantissa, scale) in zip(_PRICES, prices, strict=True):
        upgraded[index] = mantissa * power_of_ten(price_scale - scale)
    upgraded[_VOLUME] = volume
    upgraded[_QUOTE_VOLUME] = int(quote.to_integral_value(rounding=ROUND_HALF_EVEN))
    for index in (0, 5, 6, 7, 8, 11, 14):
        upgraded[index] = int(upgraded[index])
    return [*upgraded, *counters, None, None, price_scale, quantity_scale]


def _at_scales(row: list[Any], price_scale: int, quantity_scale: int) -> list[Any]:
    price_factor = power_of_ten(price_scale - row[-2])
    quantity_factor = power_of_ten(quantity_scale - row[-1])
    return [*rescale_row(row[:-2], price_factor, quantity_factor), price_scale, quantity_scale]


def upgrade_snapshot(data: dict[str, Any]) -> dict[str, Any]:
    """Convert a version-1 symbol snapshot into version 2, every bar at the finest scales found."""
    books: dict[str, dict[str, Any]] = {}
    rows_by_label = {
        label: [upgrade_row(row) for row in book["bars"]] for label, book in data["books"].items()
    }
    closes = {
        label: None if book["prev_close"] is None else legacy_price(book["prev_close"])
        for label, book in data["books"].items()
    }
    price_scales = [row[-2] for rows in rows_by_label.values() for row in rows]
    price_scales += [close[1] for close in closes.values() if close is not None]
    quantity_scales = [row[-1] for rows in rows_by_label.values() for row in rows]
    price_scale = max(price_scales, default=None)
    quantity_scale = max(quantity_scales, default=0 if price_scale is not None else None)
    for label, book in data["books"].items():
        rows = rows_by_label[label]
        close = closes[label]
        if price_scale is not None and quantity_scale is not None:
            rows = [_at_scales(row, price_scale, quantity_scale) for row in rows]
        books[label] = {
            **book,
            "bars": rows,
            "prev_close": None
            if close is None or price_scale is None
            else close[0] * power_of_ten(price_scale - close[1]),
        }
    return {
        **data,
        "version": 2,
        "price_scale": price_scale,
        "quantity_scale": quantity_scale,
        "books": books,
    }
