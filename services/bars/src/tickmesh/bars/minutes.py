"""Vectorised aggregation of sorted trades into per-minute partial bars (the hot path)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickmesh.core.timeframes import NS_PER_MINUTE

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MinuteAggregates:
    """Per-minute partial bars of one batch, as Python lists (one entry per minute)."""

    open_time_ns: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    open_event_ns: list[int]
    open_trade_id: list[int]
    close_event_ns: list[int]
    close_trade_id: list[int]
    volume: list[float]
    quote_volume: list[float]
    trade_count: list[int]
    out_of_order_trades: list[int]

    def __len__(self) -> int:
        return len(self.open_time_ns)


def aggregate_minutes(
    trade_ids: IntArray,
    prices: FloatArray,
    quantities: FloatArray,
    notionals: FloatArray,
    event_time_ns: IntArray,
    trade_counts: IntArray | None,
    out_of_order: BoolArray | None = None,
) -> MinuteAggregates:
    """Aggregate trades sorted by (event time, trade id) into one partial bar per minute.

    `out_of_order` flags the trades that arrived after a later one (None: none did); each
    minute counts its flagged trades (records, not the trades an aggregate stands for).
    """
    size = trade_ids.size
    minutes = event_time_ns - event_time_ns % NS_PER_MINUTE
    if minutes[0] == minutes[-1]:
        # One minute (most runs): whole-array reductions, no group boundaries to find.
        return MinuteAggregates(
            open_time_ns=[int(minutes[0])],
            open=[float(prices[0])],
            high=[float(prices.max())],
            low=[float(prices.min())],
            close=[float(prices[-1])],
            open_event_ns=[int(event_time_ns[0])],
            open_trade_id=[int(trade_ids[0])],
            close_event_ns=[int(event_time_ns[-1])],
            close_trade_id=[int(trade_ids[-1])],
            volume=[float(quantities.sum())],
            quote_volume=[float(notionals.sum())],
            trade_count=[size if trade_counts is None else int(trade_counts.sum())],
            out_of_order_trades=[0 if out_of_order is None else int(out_of_order.sum())],
        )
    firsts = np.concatenate(
        (np.zeros(1, dtype=np.intp), np.flatnonzero(minutes[1:] != minutes[:-1]) + 1)
    )
    lasts = np.append(firsts[1:] - 1, size - 1)
    if trade_counts is None:
        counts = np.diff(np.append(firsts, size))
    else:
        counts = np.add.reduceat(trade_counts, firsts)
    if out_of_order is None:
        late = [0] * firsts.size
    else:
        late = np.add.reduceat(out_of_order.astype(np.int64), firsts).tolist()
    return MinuteAggregates(
        open_time_ns=minutes[firsts].tolist(),
        open=prices[firsts].tolist(),
        high=np.maximum.reduceat(prices, firsts).tolist(),
        low=np.minimum.reduceat(prices, firsts).tolist(),
        close=prices[lasts].tolist(),
        open_event_ns=event_time_ns[firsts].tolist(),
        open_trade_id=trade_ids[firsts].tolist(),
        close_event_ns=event_time_ns[lasts].tolist(),
        close_trade_id=trade_ids[lasts].tolist(),
        volume=np.add.reduceat(quantities, firsts).tolist(),
        quote_volume=np.add.reduceat(notionals, firsts).tolist(),
        trade_count=counts.tolist(),
        out_of_order_trades=late,
    )
