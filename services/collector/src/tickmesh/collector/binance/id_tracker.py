"""Which trade ids of a symbol have been delivered: exactly-once filtering and gap records.

Binance trade ids (and aggregate ids) are contiguous per symbol. A tracker keeps the
highest id delivered and the intervals below it that are still missing. A run of
trades passes through ``accept``: ids already delivered are dropped (duplicates from
the exchange, an overlapping connection or a REST page), ids above the high mark are
delivered and any jump becomes a recorded gap, ids inside a gap fill it. The backfill
asks for the lowest due gap; a gap stays recorded until REST has covered it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

# Runs up to this long are checked for contiguity in Python (numpy's call overhead dominates).
_SMALL_RUN = 32


@dataclass(slots=True)
class Gap:
    """Missing ids first..last (inclusive), recorded at `found_at` (monotonic seconds)."""

    first: int
    last: int
    found_at: float

    @property
    def size(self) -> int:
        """How many ids the gap spans."""
        return self.last - self.first + 1


class TradeIdTracker:
    """Delivered ids of one symbol: a high mark plus the missing intervals below it."""

    __slots__ = ("gaps", "high", "tail_epoch", "tail_from")

    def __init__(self) -> None:
        self.high: int | None = None
        self.gaps: list[Gap] = []
        # After a reconnect, ids from here up to the exchange's latest may have been missed.
        self.tail_from: int | None = None
        # Bumped by every start_tail: a REST page requested before it cannot close the tail.
        self.tail_epoch = 0

    @property
    def missing_ids(self) -> int:
        """Ids recorded as missing (not counting an open tail)."""
        return sum(gap.size for gap in self.gaps)

    def accept(
        self, ids: Sequence[int] | npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.bool_] | None, int]:
        """Return (mask of ids to deliver, or None for all; number of new gaps)."""
        count = len(ids)
        if not count:
            return None, 0
        high = self.high
        first = int(ids[0])
        last = int(ids[-1])
        # Fast path: the run continues the stream with contiguous ids and nothing is missing.
        # With last - first == count - 1, contiguous means strictly increasing; a thin
        # instrument's run of one or two ids is checked in Python, not through numpy.
        if (
            (high is None or first == high + 1)
            and not self.gaps
            and last - first == count - 1
            and (
                count <= 2
                or (
                    all(later > earlier for earlier, later in pairwise(ids))
                    if count <= _SMALL_RUN
                    else bool(np.all(np.diff(np.asarray(ids, dtype=np.int64)) == 1))
                )
            )
        ):
            self.high = last
            return None, 0
        return self._accept_slowly([int(trade_id) for trade_id in ids])

    def _accept_slowly(self, ids: list[int]) -> tuple[npt.NDArray[np.bool_], int]:
        keep = np.zeros(len(ids), dtype=np.bool_)
        new_gaps = 0
        now = time.monotonic()
        if self.high is None:
            # The first run fixes where this stream starts, even when it arrives reordered.
            self.high = min(ids) - 1
        for index, trade_id in enumerate(ids):
            high = self.high
            if high is None or trade_id > high:
                if high is not None and trade_id > high + 1:
                    self.gaps.append(Gap(high + 1, trade_id - 1, now))
                    new_gaps += 1
                self.high = trade_id
                keep[index] = True
            elif self._fill(trade_id):
                keep[index] = True
        return keep, new_gaps

    def _fill(self, trade_id: int) -> bool:
        for position, gap in enumerate(self.gaps):
            if gap.first > trade_id:
                return False
            if trade_id > gap.last:
                continue
            if gap.first == gap.last:
                del self.gaps[position]
            elif trade_id == gap.first:
                gap.first += 1
            elif trade_id == gap.last:
                gap.last -= 1
            else:
                self.gaps.insert(position + 1, Gap(trade_id + 1, gap.last, gap.found_at))
                gap.last = trade_id - 1
            return True
        return False

    def reopen(self, ids: npt.NDArray[np.int64]) -> int:
        """Record delivered ids as missing again (dropped before the bar service got them)."""
        if not len(ids):
            return 0
        unique = np.unique(ids)
        breaks = np.flatnonzero(np.diff(unique) != 1)
        starts = np.concatenate(([0], breaks + 1))
        ends = np.concatenate((breaks, [len(unique) - 1]))
        now = time.monotonic()
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self.gaps.append(Gap(int(unique[start]), int(unique[end]), now))
        self._merge()
        return len(starts)

    def _merge(self) -> None:
        self.gaps.sort(key=lambda gap: gap.first)
        merged: list[Gap] = []
        for gap in self.gaps:
            if merged and gap.first <= merged[-1].last + 1:
                merged[-1].last = max(merged[-1].last, gap.last)
                merged[-1].found_at = min(merged[-1].found_at, gap.found_at)
            else:
                merged.append(gap)
        self.gaps = merged

    def start_tail(self) -> bool:
        """Mark ids after the high mark as possibly missed; True if no tail was open."""
        if self.high is None:
            return False
        opened = self.tail_from is None
        if opened:
            self.tail_from = self.high + 1
        self.tail_epoch += 1
        return opened

    def next_fetch(self, now: float, grace_s: float) -> int | None:
        """The first id to fetch over REST: the lowest gap older than `grace_s`, or the tail."""
        for gap in self.gaps:
            if now - gap.found_at >= grace_s:
                return gap.first
        return self.tail_from

    def resolve(self, first: int, last: int) -> int:
        """Forget missing ids first..last that a REST page covered; return how many."""
        resolved = 0
        kept: list[Gap] = []
        for gap in self.gaps:
            if gap.last < first or gap.first > last:
                kept.append(gap)
                continue
            resolved += min(gap.last, last) - max(gap.first, first) + 1
            if gap.first < first:
                kept.append(Gap(gap.first, first - 1, gap.found_at))
            if gap.last > last:
                kept.append(Gap(last + 1, gap.last, gap.found_at))
        self.gaps = kept
        return resolved
