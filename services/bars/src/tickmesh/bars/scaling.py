"""One (price scale, quantity scale) per instrument: runs and held bars brought to it exactly.

Mantissas of one instrument are summed only at one scale. A run at a coarser scale is
multiplied up (vectorised: int64 when every product fits, else Python ints); an input at a finer
scale first raises the instrument's scales, multiplying every held bar up (the rare path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tickmesh.bars.rollup import Scales, TimeframeBook
from tickmesh.bars.trades import TradeRun
from tickmesh.core.decimals import power_of_ten

_INT64_MAX = 2**63 - 1


def scaled(values: npt.NDArray[Any], factor: int) -> npt.NDArray[Any]:
    """Multiply mantissas by a power of ten: int64 when every product fits, else Python ints."""
    if factor == 1:
        return values
    result: npt.NDArray[Any]
    if values.size == 0 or max(int(values.max()), -int(values.min())) <= _INT64_MAX // factor:
        result = values * np.int64(factor)
    else:
        result = values.astype(np.object_) * factor
    return result


def raise_scales(books: Sequence[TimeframeBook], price_scale: int, quantity_scale: int) -> None:
    """Raise the scales the books share, multiplying every held value up (exact)."""
    scales = books[0].scales
    price_factor = power_of_ten(price_scale - scales.price)
    quantity_factor = power_of_ten(quantity_scale - scales.quantity)
    for book in books:
        book.rescale(price_factor, quantity_factor)
    scales.price, scales.quantity = price_scale, quantity_scale


def run_at_scales(run: TradeRun, scales: Scales) -> TradeRun:
    """Return the run with its mantissas at `scales` (at least as fine as the run's)."""
    if (run.price_scale, run.quantity_scale) == (scales.price, scales.quantity):
        return run
    return TradeRun(
        run.exchange,
        run.symbol,
        run.trade_ids,
        scaled(run.prices, power_of_ten(scales.price - run.price_scale)),
        scaled(run.quantities, power_of_ten(scales.quantity - run.quantity_scale)),
        run.event_time_ns,
        run.types,
        run.trade_counts,
        run.sides,
        scales.price,
        scales.quantity,
    )
