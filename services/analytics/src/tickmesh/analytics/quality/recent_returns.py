"""RecentReturns: the last log returns of a stream in a numpy ring, read without a copy."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tickmesh.analytics.bars_window import FloatArray


class RecentReturns:
    """The last `size` values, oldest first, as one contiguous array view.

    The spike check reads them on every bar; a deque had to be copied into an array each time.
    Storage is twice the size and compacted when full, so an append is amortised O(1).
    """

    __slots__ = ("_end", "_start", "_values", "size")

    def __init__(self, size: int, initial: Iterable[float] = ()) -> None:
        self.size = max(size, 1)
        self._values: FloatArray = np.zeros(2 * self.size)
        self._start = 0
        self._end = 0
        for value in initial:
            self.append(value)

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, value: float) -> None:
        """Add the newest value, dropping the oldest beyond `size`."""
        if self._end == self._values.shape[0]:
            count = self._end - self._start
            self._values[:count] = self._values[self._start : self._end]
            self._start, self._end = 0, count
        self._values[self._end] = value
        self._end += 1
        if self._end - self._start > self.size:
            self._start += 1

    @property
    def values(self) -> FloatArray:
        """The kept values, oldest first (a view: valid until the next append)."""
        return self._values[self._start : self._end]
