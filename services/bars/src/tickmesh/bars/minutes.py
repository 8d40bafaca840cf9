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
    first_ns, last_ns = int(event_time_ns[0]), int(event_time_ns[-1])
    first_minute = first_ns - first_ns % NS_PER_MINUTE
    if last_ns - first_minute < NS_PER_MINUTE:
        # One minute (a third of busy runs): whole-array reductions, no boundaries to find, and
        # the taker-buy sums as dot products, without a masked copy of each column.
        buy_volume = buy_quote = None
        if taker_buys is not None:
            buy_volume, buy_quote = _taker_buy_sums(quantities, notionals, taker_buys)
        return MinuteAggregates(
            open_time_ns=[first_minute],
            open=[int(prices[0])],
            high=[int(prices.max())],
            low=[int(prices.min())],
            close=[int(prices[-1])],
            open_event_ns=[first_ns],
            open_trade_id=[int(trade_ids[0])],
            close_event_ns=[last_ns],
            close_trade_id=[int(trade_ids[-1])],
            volume=[int(quantities.sum())],
            quote_volume=[int(notionals.sum())],
            trade_count=[size if trade_counts is None else int(trade_counts.sum())],
            out_of_order_trades=[0 if out_of_order is None else int(out_of_order.sum())],
            taker_buy_volume=[buy_volume],
            taker_buy_quote_volume=[buy_quote],
        )
    starts = _minute_starts(event_time_ns, first_minute, last_ns - last_ns % NS_PER_MINUTE)
    groups = len(starts)
    ends = [*starts[1:], size]
    firsts = np.array(starts, dtype=np.intp)
    # First and last row of every minute gathered at once: three gathers instead of seven.
    edges = np.array(starts + [end - 1 for end in ends], dtype=np.intp)
    edge_times = event_time_ns[edges].tolist()
    edge_ids = trade_ids[edges].tolist()
    edge_prices = prices[edges].tolist()
    if trade_counts is None:
        counts = [end - start for start, end in zip(starts, ends, strict=True)]
    else:
        counts = np.add.reduceat(trade_counts, firsts).tolist()
    if out_of_order is None:
        late = [0] * groups
    else:
        late = np.add.reduceat(out_of_order.astype(np.int64), firsts).tolist()
    buys: list[int | None] = [None] * groups
    buy_quotes: list[int | None] = [None] * groups
    if taker_buys is not None:
        buys = np.add.reduceat(quantities * taker_buys, firsts).tolist()
        buy_quotes = np.add.reduceat(notionals * taker_buys, firsts).tolist()
    return MinuteAggregates(
        open_time_ns=[time - time % NS_PER_MINUTE for time in edge_times[:groups]],
        open=edge_prices[:groups],
        high=np.maximum.reduceat(prices, firsts).tolist(),
        low=np.minimum.reduceat(prices, firsts).tolist(),
        close=edge_prices[groups:],
        open_event_ns=edge_times[:groups],
        open_trade_id=edge_ids[:groups],
        close_event_ns=edge_times[groups:],
        close_trade_id=edge_ids[groups:],
        volume=np.add.reduceat(quantities, firsts).tolist(),
        quote_volume=np.add.reduceat(notionals, firsts).tolist(),
        trade_count=counts,
        out_of_order_trades=late,
        taker_buy_volume=buys,
        taker_buy_quote_volume=buy_quotes,
    )


def _minute_starts(event_time_ns: IntArray, first_minute: int, last_minute: int) -> list[int]:
    """Row of the first trade of every minute with trades, for sorted times spanning minutes.

    A binary search per minute boundary beats flooring every time when the run spans fewer
    minutes than it has trades (a busy run spans two); a sparse run spanning a long gap
    takes the per-trade way.
    """
    span = (last_minute - first_minute) // NS_PER_MINUTE
    if span <= event_time_ns.size:
        boundaries = np.arange(first_minute + NS_PER_MINUTE, last_minute + 1, NS_PER_MINUTE)
        starts = [0]
        # A minute without trades repeats the next minute's start: skip it.
        for start in np.searchsorted(event_time_ns, boundaries).tolist():
            if start != starts[-1]:
                starts.append(start)
        return starts
    minutes = event_time_ns - event_time_ns % NS_PER_MINUTE
    return [0, *(np.flatnonzero(minutes[1:] != minutes[:-1]) + 1).tolist()]


def _taker_buy_sums(
    quantities: ValueArray, notionals: ValueArray, taker_buys: BoolArray
) -> tuple[int, int]:
    """Sum the quantities and notionals of the taker buys (exact: int64 or Python ints)."""
    if quantities.dtype == np.object_ or notionals.dtype == np.object_:
        return int((quantities * taker_buys).sum()), int((notionals * taker_buys).sum())
    buys = taker_buys.view(np.int8)
    # int64 dot products are exact here: the sums fit int64 (see trade_filter.exact_notionals).
    return int(np.dot(quantities, buys)), int(np.dot(notionals, buys))
