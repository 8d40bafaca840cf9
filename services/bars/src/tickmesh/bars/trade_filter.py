"""Sorting one trade run into its fates: duplicate, quarantined, non-market, too late, or accepted.

Vectorised with numpy; the common case (ids ascending and new, times in order, every trade sound)
takes only cheap whole-array checks and no copies. Prices and quantities are exact int64 mantissas
at the instrument's scales; notionals (price * quantity, at the sum of both scales) are computed
for the accepted trades only, in int64 when the run provably cannot overflow, else as Python ints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickmesh.bars.dedup import TradeIdSet
from tickmesh.bars.trades import QuarantinedTrades, QuarantineReason, TradeRun
from tickmesh.v2 import market_pb2

IntArray = npt.NDArray[np.int64]
# int64 mantissas, or Python ints (dtype object) on the rare run whose sums could overflow int64.
ValueArray = npt.NDArray[np.int64] | npt.NDArray[np.object_]
BoolArray = npt.NDArray[np.bool_]
OrderKey = tuple[int, int]  # (event time, trade id): the order trades are built into bars in
Selector = npt.NDArray[np.bool_] | slice

# TRADE_TYPE_UNSPECIFIED (0) and TRADE_TYPE_MARKET (1) make bars; every other type does not.
_MARKET_TYPE_MAX = 1
_INT64_MAX = 2**63 - 1


def exact_notionals(prices: ValueArray, quantities: ValueArray) -> tuple[ValueArray, ValueArray]:
    """Return (quantities, notionals) whose products and sums are exact.

    With positive prices and quantities, every partial sum of price * quantity is at most
    max(price) * max(quantity) * len; when that fits in int64 (every real feed: BTCUSDT at
    0.1 and 0.001 needs about 1e13 for a run of 1000), int64 arithmetic is exact. Otherwise the
    run falls back to Python ints (dtype object): slow, exact, and rare.
    """
    size = prices.size
    if size == 0:
        return quantities, prices
    bound = int(prices.max()) * int(quantities.max()) * size
    if bound <= _INT64_MAX and prices.dtype != np.object_ and quantities.dtype != np.object_:
        return quantities, prices * quantities
    exact_quantities = quantities.astype(np.object_)
    return exact_quantities, prices.astype(np.object_) * exact_quantities


@dataclass(slots=True)
class AcceptedTrades:
    """The trades that go into bars, sorted by (event time, trade id)."""

    trade_ids: IntArray
    event_time_ns: IntArray
    prices: ValueArray
    quantities: ValueArray
    notionals: ValueArray
    trade_counts: IntArray | None
    # Flags the trades that arrived after a trade with a later order key (None: none did).
    out_of_order: BoolArray | None = None
    # Flags the trades whose buyer was the taker (None: the run had no aggressor sides).
    taker_buys: BoolArray | None = None


@dataclass(slots=True)
class RunFates:
    """What became of one run's trades; `latest_ns` is the newest sound trade's time, if any.

    `duplicate_times` are the event times of the trades dropped as duplicates (None: none
    were), and `order_key` the largest (event time, trade id) of every sound trade so far.
    """

    accepted: AcceptedTrades | None
    latest_ns: int | None
    duplicates: int
    non_market: int
    too_late: TradeRun | None
    quarantined: QuarantinedTrades | None
    duplicate_times: IntArray | None = None
    order_key: OrderKey | None = None


class _InPlay:
    """Columns of the run's trades still in play; `index` maps rows to run positions (None: same)."""

    __slots__ = ("ids", "index", "late", "prices", "quantities", "run", "times")

    def __init__(self, run: TradeRun, index: npt.NDArray[np.intp] | None, ids: IntArray) -> None:
        self.run = run
        self.index = index
        self.ids = ids
        self.times: IntArray = run.event_time_ns if index is None else run.event_time_ns[index]
        self.prices: ValueArray = run.prices
        self.quantities: ValueArray = run.quantities
        self.late: BoolArray | None = None

    def reorder(self, order: npt.NDArray[np.intp]) -> None:
        """Permute the rows (only ids and times are gathered at this stage)."""
        self.index = order if self.index is None else self.index[order]
        self.ids = self.ids[order]
        self.times = self.times[order]

    def gather_values(self) -> None:
        """Gather prices and quantities in row order."""
        if self.index is not None:
            self.prices = self.run.prices[self.index]
            self.quantities = self.run.quantities[self.index]

    def positions(self, selector: Selector) -> npt.NDArray[np.intp]:
        """Return the run positions of the selected rows."""
        if self.index is None:
            return np.arange(self.ids.size)[selector]
        return self.index[selector]

    def keep(self, selector: Selector) -> None:
        """Keep only the selected rows."""
        self.index = self.positions(selector)
        self.ids = self.ids[selector]
        self.times = self.times[selector]
        self.prices = self.prices[selector]
        self.quantities = self.quantities[selector]
        if self.late is not None:
            self.late = self.late[selector]

    def column(self, values: npt.NDArray[np.int32] | IntArray) -> npt.NDArray[np.int64]:
        """Return another run column in row order."""
        gathered = values if self.index is None else values[self.index]
        return gathered.astype(np.int64, copy=False)


def _quarantine(rows: _InPlay, valid: npt.NDArray[np.bool_]) -> QuarantinedTrades:
    """Describe the rows that are not valid, with the first reason that applies to each."""
    invalid = ~valid
    price_ok = rows.prices > 0
    sound = price_ok & (rows.quantities > 0)
    reasons = np.full(rows.ids.size, QuarantineReason.INVALID_QUANTITY, dtype=np.uint8)
    reasons[sound] = QuarantineReason.EVENT_TIME_IN_FUTURE
    reasons[~price_ok] = QuarantineReason.INVALID_PRICE
    return QuarantinedTrades(rows.run.take(rows.positions(invalid)), reasons[invalid])


def _flag_out_of_order(rows: _InPlay, order_key: OrderKey | None) -> BoolArray | None:
    """Flag the rows (sorted by order key) that arrived after a row or an earlier trade with a later key.

    Rows keep their run positions, which are the arrival order: a row is late when a row of
    larger key (a larger rank) arrived before it. None when no row is late (the common case).
    """
    late: BoolArray | None = None
    positions = rows.index
    if (
        positions is not None
        and positions.size > 1
        and bool((positions[1:] < positions[:-1]).any())
    ):
        # The key rank of each arrival, in arrival order: a scatter over the run's positions
        # (a counting sort) instead of an argsort.
        ranks = np.full(len(rows.run), -1, dtype=np.intp)
        ranks[positions] = np.arange(positions.size)
        arrival = ranks[ranks >= 0]
        late_by_arrival = np.zeros(arrival.size, dtype=np.bool_)
        late_by_arrival[1:] = arrival[1:] < np.maximum.accumulate(arrival)[:-1]
        late = np.empty(arrival.size, dtype=np.bool_)
        late[arrival] = late_by_arrival
    if order_key is not None and (int(rows.times[0]), int(rows.ids[0])) < order_key:
        time_ns, trade_id = order_key
        before = (rows.times < time_ns) | ((rows.times == time_ns) & (rows.ids < trade_id))
        late = before if late is None else late | before
    return late


def sort_run(
    run: TradeRun,
    applied: TradeIdSet,
    future_limit_ns: int | None,
    late_before_ns: int | None,
    order_key: OrderKey | None = None,
) -> RunFates:
    """Sort a run's trades into fates, recording every non-duplicate id in `applied`.

    Every non-duplicate trade is disposed of exactly once (accepted, quarantined, excluded as
    non-market, or reported too late), so all of them count as applied and a resend is a duplicate.
    The run's order is its arrival order: a sound trade whose (event time, trade id) is below
    `order_key` (the largest key before the run) or below an earlier trade of the run is flagged
    out of order.
    """
    size = len(run)
    ids = run.trade_ids
    rows: _InPlay
    duplicate_times: IntArray | None = None
    if size < 2 or bool((ids[1:] > ids[:-1]).all()):
        rows = _InPlay(run, None, ids)
        if not applied.all_new(ids):
            unseen = ~applied.contains(ids)
            rows = _InPlay(run, np.flatnonzero(unseen), ids[unseen])
            if rows.ids.size < size:
                duplicate_times = run.event_time_ns[~unseen]
    else:
        unique_ids, first = np.unique(ids, return_index=True)
        unseen = ~applied.contains(unique_ids)
        rows = _InPlay(run, first[unseen], unique_ids[unseen])
        if rows.ids.size < size:
            # The first arrival of an id is the original; later ones and applied ids are duplicates.
            dropped = np.ones(size, dtype=np.bool_)
            dropped[first[unseen]] = False
            duplicate_times = run.event_time_ns[dropped]
    duplicates = size - rows.ids.size
    if rows.ids.size == 0:
        return RunFates(None, None, duplicates, 0, None, None, duplicate_times, order_key)
    applied.add(rows.ids)

    times = rows.times
    if times.size > 1 and bool((times[1:] < times[:-1]).any()):
        rows.reorder(np.lexsort((rows.ids, times)))
    rows.gather_values()

    # Mantissas are integers: positive prices and quantities are all there is to check. Two
    # reductions settle the common case (all sound) without building a mask.
    future = future_limit_ns is not None and rows.times[-1] > future_limit_ns
    quarantined = None
    if future or rows.prices.min() <= 0 or rows.quantities.min() <= 0:
        valid = (rows.prices > 0) & (rows.quantities > 0)
        if future_limit_ns is not None and future:
            valid &= rows.times <= future_limit_ns
        quarantined = _quarantine(rows, valid)
        rows.keep(valid)
        if rows.ids.size == 0:
            return RunFates(
                None, None, duplicates, 0, None, quarantined, duplicate_times, order_key
            )
    latest = int(rows.times[-1])
    rows.late = _flag_out_of_order(rows, order_key)
    newest_key = (latest, int(rows.ids[-1]))
    if order_key is None or newest_key > order_key:
        order_key = newest_key

    non_market = 0
    if run.types is not None:
        # Viewed unsigned, negative (unknown) types become huge and fail the test too.
        market = rows.column(run.types).view(np.uint64) <= _MARKET_TYPE_MAX
        if not market.all():
            non_market = int(market.size - np.count_nonzero(market))
            rows.keep(market)

    too_late = None
    if late_before_ns is not None and rows.ids.size > 0 and rows.times[0] < late_before_ns:
        cut = int(np.searchsorted(rows.times, late_before_ns, side="left"))
        too_late = run.take(rows.positions(slice(0, cut)))
        rows.keep(slice(cut, None))

    accepted = None
    if rows.ids.size > 0:
        counts = None if run.trade_counts is None else rows.column(run.trade_counts)
        buys = None
        if run.sides is not None:
            sides = run.sides if rows.index is None else run.sides[rows.index]
            buys = sides == market_pb2.AGGRESSOR_SIDE_BUY
        quantities, notionals = exact_notionals(rows.prices, rows.quantities)
        accepted = AcceptedTrades(
            rows.ids,
            rows.times,
            rows.prices,
            quantities,
            notionals,
            counts,
            rows.late,
            buys,
        )
    return RunFates(
        accepted,
        latest,
        duplicates,
        non_market,
        too_late,
        quarantined,
        duplicate_times,
        order_key,
    )
