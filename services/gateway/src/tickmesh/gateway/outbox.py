"""What a push channel owes its clients: per timeframe, the latest forming bar and every final bar.

Pure logic, no I/O: the channel asks it what is due. Forming bars coalesce (only the
latest matters); final bars queue and are never dropped; each timeframe is pushed at most
once per interval of its schedule (a push the event loop got to late does not delay the next
one by as much, so lag does not build up under load), except that a bar's first final version
goes at once: a client waits for a closed bar no longer than the mesh takes to make it final,
not up to an interval more behind the forming bars pushed just before. That is one extra push
per bar close at most; revisions and forming bars keep the schedule, which restarts from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tickmesh.core.timeframes import from_proto
from tickmesh.v2 import market_pb2


@dataclass
class _Slot:
    finals: dict[int, market_pb2.Bar] = field(default_factory=dict)
    forming: market_pb2.Bar | None = None
    last_sent: float = float("-inf")
    pending_since: float | None = None
    # A first final version (revision 0) is pending: it goes without waiting for the interval.
    closed: bool = False


class Outbox:
    """Pending bars of one push channel, by timeframe label."""

    def __init__(self, interval_seconds: float) -> None:
        self._interval = interval_seconds
        self._slots: dict[str, _Slot] = {}

    @property
    def timeframes(self) -> list[str]:
        """The subscribed timeframe labels."""
        return sorted(self._slots)

    def subscribe(self, label: str) -> None:
        """Start receiving a timeframe."""
        self._slots.setdefault(label, _Slot())

    def unsubscribe(self, label: str) -> None:
        """Stop receiving a timeframe; what was pending for it is discarded."""
        self._slots.pop(label, None)

    def offer(self, bar: market_pb2.Bar, now: float | None = None) -> float | None:
        """Take a bar from the upstream stream (arriving at `now`); when it may go, or None when
        its timeframe is not subscribed."""
        slot = self._slots.get(from_proto(bar.timeframe).label)
        if slot is None:
            return None
        if slot.pending_since is None and not slot.finals and slot.forming is None:
            slot.pending_since = now
        if bar.final:
            # A revision replaces the pending version of the same bar: still no final lost.
            slot.finals[bar.open_time_ns] = bar
            if slot.forming is not None and slot.forming.open_time_ns <= bar.open_time_ns:
                slot.forming = None
            if bar.revision == 0:
                slot.closed = True
        elif not slot.finals or bar.open_time_ns > max(slot.finals):
            slot.forming = bar
        return self._due_at(slot)

    def _due_at(self, slot: _Slot) -> float:
        """When the slot's pending update may go (-inf: at once, it closes a bar)."""
        return float("-inf") if slot.closed else slot.last_sent + self._interval

    def next_due(self) -> float | None:
        """When the earliest pending update may go (monotonic seconds); None when none is pending."""
        return min(
            (
                self._due_at(slot)
                for slot in self._slots.values()
                if slot.finals or slot.forming is not None
            ),
            default=None,
        )

    def due(self, now: float) -> list[tuple[str, list[market_pb2.Bar]]]:
        """Take the updates whose interval has passed: (timeframe, bars oldest first)."""
        updates = []
        for label, slot in self._slots.items():
            if now - slot.last_sent < self._interval and not slot.closed:
                continue
            bars = [slot.finals[key] for key in sorted(slot.finals)]
            if slot.forming is not None:
                bars.append(slot.forming)
            if not bars:
                continue
            # The schedule, not the moment the loop got round to it, sets the next slot: a
            # push delayed by a busy loop does not push every later update back with it.
            became_due = max(slot.last_sent + self._interval, slot.pending_since or now)
            slot.last_sent = now if slot.closed else min(now, became_due)
            slot.finals.clear()
            slot.forming = None
            slot.pending_since = None
            slot.closed = False
            updates.append((label, bars))
        return updates
