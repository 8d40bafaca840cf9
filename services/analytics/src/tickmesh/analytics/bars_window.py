"""A bounded ring of the most recent accepted bars, kept as contiguous numpy columns."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickmesh.analytics.bar_terms import TERMS, bar_terms
from tickmesh.analytics.bars import BarInput

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Rows a new window starts with; storage doubles up to twice the capacity as bars arrive.
_FIRST_ROWS = 16


class BarWindow:
    """The last `capacity` bars in time order; column views are contiguous so TA-Lib reads them in place.

    Storage grows to twice the capacity and is compacted only when the end is reached, so
    an append is amortised O(1) and every view stays one contiguous slice. It starts small:
    the whole market's 12,000 streams held 1.5 GB of empty storage before their first bars,
    and a thin instrument's longer timeframes may take months to fill it. Each bar's feature
    terms (see bar_terms) are kept as one row of `terms`, computed when the bar is appended.
    """

    __slots__ = (
        "_close",
        "_end",
        "_high",
        "_low",
        "_open",
        "_open_time",
        "_quote_volume",
        "_start",
        "_taker_buy_volume",
        "_terms",
        "_trade_count",
        "_volume",
        "capacity",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._allocate(min(2 * capacity, _FIRST_ROWS))
        self._start = 0
        self._end = 0

    def _allocate(self, rows: int) -> None:
        self._open_time: IntArray = np.zeros(rows, dtype=np.int64)
        self._open: FloatArray = np.zeros(rows)
        self._high: FloatArray = np.zeros(rows)
        self._low: FloatArray = np.zeros(rows)
        self._close: FloatArray = np.zeros(rows)
        self._volume: FloatArray = np.zeros(rows)
        self._quote_volume: FloatArray = np.zeros(rows)
        self._trade_count: FloatArray = np.zeros(rows)
        self._taker_buy_volume: FloatArray = np.zeros(rows)
        self._terms: FloatArray = np.zeros((rows, TERMS))

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, bar: BarInput) -> None:
        """Add a bar after the newest one, dropping the oldest when full."""
        if self._end == self._open.shape[0]:
            self._make_room()
        end = self._end
        previous_close = float(self._close[end - 1]) if end > self._start else None
        self._terms[end] = bar_terms(
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            bar.taker_buy_volume,
            previous_close,
        )
        self._open_time[end] = bar.open_time_ns
        self._open[end] = bar.open
        self._high[end] = bar.high
        self._low[end] = bar.low
        self._close[end] = bar.close
        self._volume[end] = bar.volume
        self._quote_volume[end] = bar.quote_volume
        self._trade_count[end] = bar.trade_count
        self._taker_buy_volume[end] = bar.taker_buy_volume
        self._end = end + 1
        if self._end - self._start > self.capacity:
            self._start += 1

    def _make_room(self) -> None:
        """Move the kept bars to the front, into storage twice as large while under 2 x capacity."""
        count = self._end - self._start
        old = self._columns()
        rows = self._open.shape[0]
        if rows < 2 * self.capacity:
            self._allocate(min(2 * self.capacity, 2 * rows))
        for column, before in zip(self._columns(), old, strict=True):
            column[:count] = before[self._start : self._end]
        self._start = 0
        self._end = count

    def _columns(self) -> tuple[npt.NDArray[np.generic], ...]:
        return (
            self._open_time,
            self._open,
            self._high,
            self._low,
            self._close,
            self._volume,
            self._quote_volume,
            self._trade_count,
            self._taker_buy_volume,
            self._terms,
        )

    def newest_open_time_ns(self) -> int:
        """Return the open time of the newest bar (the window must not be empty)."""
        return int(self._open_time[self._end - 1])

    def index_at_or_after(self, open_time_ns: int) -> int:
        """Return the position of the first bar opening at or after `open_time_ns` (len if none)."""
        return int(np.searchsorted(self.open_time, open_time_ns, side="left"))

    def truncate(self, length: int) -> list[BarInput]:
        """Keep the first `length` bars and return the removed ones, oldest first."""
        if not 0 <= length <= len(self):
            raise ValueError(f"cannot truncate {len(self)} bars to {length}")
        removed = [self.bar(index) for index in range(length, len(self))]
        self._end = self._start + length
        return removed

    def bar(self, index: int) -> BarInput:
        """Return the bar at a position (0 is the oldest kept)."""
        at = self._start + index
        return BarInput(
            open_time_ns=int(self._open_time[at]),
            open=float(self._open[at]),
            high=float(self._high[at]),
            low=float(self._low[at]),
            close=float(self._close[at]),
            volume=float(self._volume[at]),
            quote_volume=float(self._quote_volume[at]),
            trade_count=int(self._trade_count[at]),
            taker_buy_volume=float(self._taker_buy_volume[at]),
        )

    @property
    def open_time(self) -> IntArray:
        """Bar open times, Unix epoch nanoseconds, oldest first."""
        return self._open_time[self._start : self._end]

    @property
    def open(self) -> FloatArray:
        """Open prices, oldest first."""
        return self._open[self._start : self._end]

    @property
    def high(self) -> FloatArray:
        """High prices, oldest first."""
        return self._high[self._start : self._end]

    @property
    def low(self) -> FloatArray:
        """Low prices, oldest first."""
        return self._low[self._start : self._end]

    @property
    def close(self) -> FloatArray:
        """Close prices, oldest first."""
        return self._close[self._start : self._end]

    @property
    def volume(self) -> FloatArray:
        """Base volumes, oldest first."""
        return self._volume[self._start : self._end]

    @property
    def quote_volume(self) -> FloatArray:
        """Quote volumes, oldest first."""
        return self._quote_volume[self._start : self._end]

    @property
    def taker_buy_volume(self) -> FloatArray:
        """Taker-buy base volumes, oldest first; NaN where unknown."""
        return self._taker_buy_volume[self._start : self._end]

    @property
    def trade_count(self) -> FloatArray:
        """Trade counts as floats, oldest first."""
        return self._trade_count[self._start : self._end]

    @property
    def terms(self) -> FloatArray:
        """Feature terms, one row per bar (columns in bar_terms), oldest first."""
        return self._terms[self._start : self._end]
