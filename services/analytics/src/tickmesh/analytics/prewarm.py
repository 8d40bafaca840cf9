"""PreWarmer: an instrument's longer timeframes warmed while the consumer is idle, before their
first close.

A stream is warmed from its stored bars when its first bar arrives. For a whole market after a
start that means the 2,000 streams of 5m warm at the first 5m close, the 15m ones at the first
15m close, and so on: each costs ~7 ms of CPU (320 bars), so those closes' indicators came
7-15 s late (bench_whole_market). Once an instrument's 1m bars flow, its other timeframes'
histories are known up to the open of the bucket holding the newest minute: everything before
it is final and stored (the bar service settles all of an instrument's timeframes together,
and in change-id order before that minute). So they are fetched a few at a time and applied by
the consumer in its idle moments, in its own task: the engine is never touched elsewhere.

A stream whose first bar arrives before its pre-warm was applied is warmed as before (taking
the fetched history when it is for that bar's open). One already warm is never warmed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tickmesh.analytics.engine import StreamKey
from tickmesh.analytics.warmup_prefetch import WarmupPrefetch
from tickmesh.core.timeframes import TIMEFRAMES
from tickmesh.v2 import market_pb2

# Fetches at once: enough to keep the idle consumer busy, few enough to leave the bar
# service's GetBars (and the first-seen warm-ups sharing the prefetch's slots) room.
DEFAULT_IN_FLIGHT = 4
_LONGER = tuple(spec for spec in TIMEFRAMES if spec.proto != market_pb2.TIMEFRAME_1M)


class PreWarmer:
    """Which streams to pre-warm and whose fetch has finished; the consumer applies them."""

    def __init__(
        self,
        prefetch: WarmupPrefetch,
        knows: Callable[[StreamKey], bool],
        in_flight: int = DEFAULT_IN_FLIGHT,
    ) -> None:
        self._prefetch = prefetch
        self._knows = knows
        self._in_flight = in_flight
        # Streams to fetch (in the order met) with the open time their history ends before.
        self._queued: dict[StreamKey, int] = {}
        self._requested: dict[StreamKey, int] = {}
        self.changed = asyncio.Event()

    @property
    def busy(self) -> bool:
        """True while a stream waits to be fetched or applied."""
        return bool(self._queued or self._requested)

    def note_minute(self, key: StreamKey, open_time_ns: int) -> None:
        """A 1m final of `key`'s instrument was processed: queue its longer timeframes not warm."""
        instrument, timeframe = key
        if timeframe != market_pb2.TIMEFRAME_1M:
            return
        for spec in _LONGER:
            other = (instrument, spec.proto)
            if other not in self._requested and not self._knows(other):
                # A newer minute moves the end of the history to fetch on.
                self._queued[other] = spec.bucket(open_time_ns)

    def top_up(self) -> None:
        """Start fetches until `in_flight` are running or nothing is queued."""
        while self._queued and len(self._requested) < self._in_flight:
            key = next(iter(self._queued))
            before_ns = self._queued.pop(key)
            if self._knows(key) or key in self._prefetch:
                continue  # warmed, or its first bar's own fetch is on the way
            task = self._prefetch.request(key, before_ns)
            task.add_done_callback(lambda _: self.changed.set())
            self._requested[key] = before_ns

    def finished(self) -> list[tuple[StreamKey, int]]:
        """The streams whose fetch has finished (and which the consumer did not take since),
        with the open time each history ends before; they are no longer tracked here."""
        self.changed.clear()
        done = []
        for key, before_ns in list(self._requested.items()):
            ready = self._prefetch.finished_before(key)
            if ready is None and key in self._prefetch:
                continue  # still fetching
            del self._requested[key]
            if ready == before_ns:
                done.append((key, before_ns))
        return done

    def reset(self) -> None:
        """Forget everything (the subscription ended; the prefetch dropped its fetches)."""
        self._queued.clear()
        self._requested.clear()
        self.changed.clear()
