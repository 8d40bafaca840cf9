"""Vectorised aggregation of sorted trades into per-minute partial bars (the hot path).

Prices are int64 mantissas; volumes and quote volumes are int64 when the run's sums provably fit
(see trade_filter.exact_notionals), else object arrays of Python ints. Either way every sum is an
exact integer, handed back as Python ints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickmesh.core.timeframes import NS_PER_MINUTE

IntArray = npt.NDArray[np.int64]
# int64 mantissas, or Python ints (dtype object) where int64 sums could overflow.
ValueArray = npt.NDArray[np.int64] | npt.NDArray[np.object_]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MinuteAggregates:
    """Per-minute partial bars of one batch, as Python lists (one entry per minute)."""

    open_time_ns: list[int]
    open: list[int]
    high: list[int]
    low: list[int]
    close: list[int]
    open_event_ns: list[int]
    open_trade_id: list[int]
    close_event_ns: list[int]
    close_trade_id: list[int]
    volume: list[int]
    quote_volume: list[int]
    trade_count: list[int]
    out_of_order_trades: list[int]
    # None entries: the run had no aggressor sides, so the taker-buy volumes are unknown.
    taker_buy_volume: list[int | None]
    taker_buy_quote_volume: list[int | None]

    def __len__(self) -> int:
        return len(self.open_time_ns)


def aggregate_minutes(
    trade_ids: IntArray,
    prices: ValueArray,
    quantities: ValueArray,
    notionals: ValueArray,
    event_time_ns: IntArray,
    trade_counts: IntArray | None,
    out_of_order: BoolArray | None = None,
    taker_buys: BoolArray | None = None,
) -> MinuteAggregates:
    """Aggregate trades sorted by (event time, trade id) into one partial bar per minute.

    `out_of_order` flags the trades that arrived after a later one (None: none did); each
    minute counts its flagged trades (records, not the trades an aggregate stands for).
    `taker_buys` flags the trades whose buyer was the taker (None: sides unknown).
    """
    size = trade_ids.size
    minutes = event_time_ns - event_time_ns % NS_PER_MINUTE
    buy_quantities = buy_notionals = None
    if taker_buys is not None:
        buy_quantities = quantities * taker_buys
        buy_notionals = notionals * taker_buys
    if minutes[0] == minutes[-1]:
        # One minute (most runs): whole-array reductions, no group boundaries to find.
        return MinuteAggregates(
            open_time_ns=[int(minutes[0])],
            open=[int(prices[0])],
            high=[int(prices.max())],
            low=[int(prices.min())],
            close=[int(prices[-1])],
            open_event_ns=[int(event_time_ns[0])],
            open_trade_id=[int(trade_ids[0])],
            close_event_ns=[int(event_time_ns[-1])],
            close_trade_id=[int(trade_ids[-1])],
            volume=[int(quantities.sum())],
            quote_volume=[int(notionals.sum())],
            trade_count=[size if trade_counts is None else int(trade_counts.sum())],
            out_of_order_trades=[0 if out_of_order is None else int(out_of_order.sum())],
            taker_buy_volume=[None if buy_quantities is None else int(buy_quantities.sum())],
            taker_buy_quote_volume=[None if buy_notionals is None else int(buy_notionals.sum())],
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
    unknown: list[int | None] = [None] * firsts.size
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
        taker_buy_volume=unknown
        if buy_quantities is None
        else np.add.reduceat(buy_quantities, firsts).tolist(),
        taker_buy_quote_volume=unknown
        if buy_notionals is None
        else np.add.reduceat(buy_notionals, firsts).tolist(),
    )
