"""Cutting and filtering SymbolTrades messages column by column (batches, dedup, overflow)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tickmesh.v2 import market_pb2


def trade_ids(run: market_pb2.SymbolTrades) -> npt.NDArray[np.int64]:
    """The run's trade ids as a numpy array."""
    return np.fromiter(run.trade_ids, dtype=np.int64, count=len(run.trade_ids))


def slice_run(run: market_pb2.SymbolTrades, start: int, stop: int) -> market_pb2.SymbolTrades:
    """Trades start..stop-1 of a run as a new run (optional columns kept only when present)."""
    types: Any = run.types[start:stop] if len(run.types) else ()
    return market_pb2.SymbolTrades(
        exchange=run.exchange,
        symbol=run.symbol,
        trade_ids=run.trade_ids[start:stop],
        prices=run.prices[start:stop],
        quantities=run.quantities[start:stop],
        sides=run.sides[start:stop],
        event_time_ns=run.event_time_ns[start:stop],
        receive_time_ns=run.receive_time_ns[start:stop],
        types=types,
        trade_counts=run.trade_counts[start:stop] if len(run.trade_counts) else (),
        price_scale=run.price_scale,
        quantity_scale=run.quantity_scale,
    )


def select_run(
    run: market_pb2.SymbolTrades, keep: npt.NDArray[np.bool_]
) -> market_pb2.SymbolTrades:
    """The trades of a run where `keep` is true, in order."""
    index = np.flatnonzero(keep)

    def pick(column: Any, dtype: Any) -> Any:
        if not len(column):
            return ()
        return np.asarray(column, dtype=dtype)[index].tolist()

    return market_pb2.SymbolTrades(
        exchange=run.exchange,
        symbol=run.symbol,
        trade_ids=pick(run.trade_ids, np.int64),
        prices=pick(run.prices, np.int64),
        quantities=pick(run.quantities, np.int64),
        sides=pick(run.sides, np.int32),
        event_time_ns=pick(run.event_time_ns, np.int64),
        receive_time_ns=pick(run.receive_time_ns, np.int64),
        types=pick(run.types, np.int32),
        trade_counts=pick(run.trade_counts, np.uint32),
        price_scale=run.price_scale,
        quantity_scale=run.quantity_scale,
    )
