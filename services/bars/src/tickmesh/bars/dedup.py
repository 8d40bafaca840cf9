"""Applied trade ids of one symbol, kept as a bounded set of closed id intervals.

Binance numbers trades contiguously per symbol, so the ids a bar service has applied collapse
into a handful of ranges (usually one); a Python set of every id would grow without bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]


def _runs(sorted_ids: IdArray) -> tuple[IdArray, IdArray]:
    """Split sorted unique ids into maximal runs of consecutive ids: (run starts, run ends)."""
    if int(sorted_ids[-1]) - int(sorted_ids[0]) == sorted_ids.size - 1:
        return sorted_ids[:1], sorted_ids[-1:]
    breaks = np.flatnonzero(np.diff(sorted_ids) != 1)
    if breaks.size == 0:
        return sorted_ids[:1], sorted_ids[-1:]
    starts = np.concatenate((sorted_ids[:1], sorted_ids[breaks + 1]))
    ends = np.concatenate((sorted_ids[breaks], sorted_ids[-1:]))
    return starts, ends


def _merge(starts: IdArray, ends: IdArray) -> tuple[IdArray, IdArray]:
    """Merge closed intervals that overlap or touch into sorted, disjoint, non-adjacent ones."""
    order = np.argsort(starts, kind="stable")
    starts = starts[order]
    ends = ends[order]
    reach = np.maximum.accumulate(ends)
    opens_group = np.flatnonzero(starts[1:] > reach[:-1] + 1) + 1
    firsts = np.concatenate((np.zeros(1, dtype=np.intp), opens_group))
    return starts[firsts], np.maximum.reduceat(ends, firsts)


class TradeIdSet:
    """Sorted, disjoint, non-adjacent closed intervals of applied trade ids, at most `max_intervals`.

    When a stream leaves more gaps than `max_intervals` allows, the oldest (lowest) intervals are
    coalesced: ids in those old gaps then count as duplicates. The gaps that old are far behind the
    watermark, where a trade would be too late for its bar anyway, so bounding memory costs nothing.
    """

    __slots__ = ("_ends", "_starts", "coalesced_gaps", "max_intervals")

    def __init__(self, max_intervals: int = 4096) -> None:
        self.max_intervals = max_intervals
        self._starts: IdArray = np.empty(0, dtype=np.int64)
        self._ends: IdArray = np.empty(0, dtype=np.int64)
        self.coalesced_gaps = 0

    def __len__(self) -> int:
        return int(self._starts.size)

    @property
    def intervals(self) -> list[tuple[int, int]]:
        """Return the intervals as (first id, last id) pairs, lowest first."""
        return list(zip(self._starts.tolist(), self._ends.tolist(), strict=True))

    def newest(self) -> int | None:
        """Return the largest applied id, or None before the first."""
        return int(self._ends[-1]) if self._ends.size else None

    def all_new(self, sorted_ids: IdArray) -> bool:
        """Tell whether every id of an ascending array lies above every applied id (cheap)."""
        return self._starts.size == 0 or bool(sorted_ids[0] > self._ends[-1])

    def contains(self, ids: IdArray) -> npt.NDArray[np.bool_]:
        """Tell, for every id, whether it has already been applied."""
        if self._starts.size == 0:
            return np.zeros(ids.size, dtype=np.bool_)
        if self._starts.size == 1:
            inside: npt.NDArray[np.bool_] = (ids >= self._starts[0]) & (ids <= self._ends[0])
            return inside
        slot = np.searchsorted(self._starts, ids, side="right") - 1
        inside = (slot >= 0) & (ids <= self._ends[np.maximum(slot, 0)])
        return inside

    def add(self, sorted_unique_ids: IdArray) -> None:
        """Record sorted, unique, not yet applied ids as applied."""
        size = sorted_unique_ids.size
        if size == 0:
            return
        first, last = int(sorted_unique_ids[0]), int(sorted_unique_ids[-1])
        if self._starts.size > 0 and last - first == size - 1 and int(self._ends[-1]) + 1 == first:
            # The steady state of a gap-free stream: the new ids extend the newest interval.
            self._ends[-1] = last
            return
        run_starts, run_ends = _runs(sorted_unique_ids)
        if self._starts.size == 0:
            starts, ends = run_starts.copy(), run_ends.copy()
        else:
            starts, ends = _merge(
                np.concatenate((self._starts, run_starts)), np.concatenate((self._ends, run_ends))
            )
        excess = starts.size - self.max_intervals
        if excess > 0:
            self.coalesced_gaps += excess
            starts = np.concatenate((starts[:1], starts[excess + 1 :]))
            ends = ends[excess:]
        self._starts, self._ends = starts, ends

    def to_dict(self) -> dict[str, Any]:
        """Return the set as a JSON-able dict."""
        return {
            "starts": self._starts.tolist(),
            "ends": self._ends.tolist(),
            "coalesced_gaps": self.coalesced_gaps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], max_intervals: int) -> TradeIdSet:
        """Rebuild a set saved by `to_dict`."""
        restored = cls(max_intervals)
        restored._starts = np.asarray(data["starts"], dtype=np.int64)
        restored._ends = np.asarray(data["ends"], dtype=np.int64)
        restored.coalesced_gaps = int(data["coalesced_gaps"])
        return restored
