"""Long-lived objects frozen out of the garbage collector's full collections.

The bar service keeps every instrument's final bars for the revision window: for the whole
market (2,000 instruments, six timeframes, 26 h) that is about 4 M tracked objects, and a full
collection scans every one of them with the event loop stopped: 1.5 s (bench_gc_pause).
CPython starts one whenever the objects that survived since the last have grown by a quarter:
several times while a day fills up, then about hourly, each one a stall of every stream.

`gc.freeze()` moves every object alive to a permanent generation that no collection scans.
Refcounting still frees a frozen object when its last reference goes (a bar pruned out of the
window), so the one cost is this: a reference cycle among frozen objects that becomes garbage
later is never collected. A full collection just before each freeze clears the cyclic garbage
made since the last one; what is left to leak is the cycles of long-lived objects that die.
Measured on the bar service: 200 Subscribe streams held over a freeze and then closed left 80
frozen objects behind, of ~21,000 they had held.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram

from tickmesh.core.periodic import PeriodicTask

log = logging.getLogger(__name__)

# A minute's survivors are few: collecting them took 5.6 ms in bench_gc_pause and 10-100 ms in
# the whole-market bench's services, far below the ~1 s full collections it replaces.
DEFAULT_INTERVAL_SECONDS = 60.0
_FREEZE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def freeze_survivors() -> float:
    """Collect the garbage of the unfrozen objects, freeze what survives; the seconds taken."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


_paused_depth = 0
_enabled_before_pause = False


def pause_collection() -> None:
    """Stop automatic collection until the matching `resume_collection` (nestable)."""
    global _paused_depth, _enabled_before_pause
    if _paused_depth == 0:
        _enabled_before_pause = gc.isenabled()
        gc.disable()
    _paused_depth += 1


def resume_collection() -> None:
    """End one `pause_collection`; collection runs again after the last."""
    global _paused_depth
    _paused_depth -= 1
    if _paused_depth == 0 and _enabled_before_pause:
        gc.enable()


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic collection inside (refcounting still frees); nestable, also across tasks.

    For a burst of work whose objects die when it ends, and that does not wait on I/O (which
    could hold the pause without bound). A whole market's minute close builds ~2,000 engine
    heads of a few dozen objects each: collected while they lived, they were traversed,
    promoted and traversed again, and every close of the bar service ran 75 young, 7 middle
    and one full collection of the unfrozen objects, 20-70 ms of its 130-280 ms commit build.
    Paused, they die young, untraversed; the collector runs after, over what survived.
    """
    pause_collection()
    try:
        yield
    finally:
        resume_collection()


class BurstPause:
    """Automatic collection paused while a burst of queued work lasts, for at most `max_seconds`.

    Analytics computes a minute close's 2,000 bars in one burst, and collected 62-65 young,
    6 middle and a full collection (80-125 ms) over their rows in the first seconds. A burst
    that goes on past `max_seconds` (a catch-up after a restart) gets its collections back
    until the queue has been empty once, so cyclic garbage cannot pile up without bound.
    """

    def __init__(
        self, max_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_seconds = max_seconds
        self._clock = clock
        self._paused_at: float | None = None
        self._spent = False

    def follow(self, busy: bool) -> None:
        """Say whether work is queued: a burst starts, goes on or has ended."""
        if not busy:
            self.end()
            self._spent = False
        elif self._paused_at is None:
            if not self._spent:
                pause_collection()
                self._paused_at = self._clock()
        elif self._clock() - self._paused_at > self._max_seconds:
            self.end()
            self._spent = True

    def end(self) -> None:
        """Resume collection if this burst paused it."""
        if self._paused_at is not None:
            self._paused_at = None
            resume_collection()


class LongLivedFreezer:
    """Freezes the survivors at start (what a restore loaded) and then every interval."""

    def __init__(
        self, registry: CollectorRegistry, interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    ) -> None:
        # Half-way between minute closes, so the pause never adds to a close's burst.
        self._task = PeriodicTask(
            "gc freeze",
            self.freeze_now,
            interval_seconds,
            delay_first=True,
            at_offset_seconds=interval_seconds / 2,
        )
        self._seconds = Histogram(
            "tickmesh_gc_freeze_seconds",
            "Time of one collection of the unfrozen objects and freeze of the survivors.",
            buckets=_FREEZE_BUCKETS,
            registry=registry,
        )
        self._frozen = Gauge(
            "tickmesh_gc_frozen_objects",
            "Objects in the permanent generation, which no garbage collection scans.",
            registry=registry,
        )

    def freeze_now(self) -> None:
        """Collect and freeze once, recording the time taken and the objects frozen."""
        seconds = freeze_survivors()
        frozen = gc.get_freeze_count()
        self._seconds.observe(seconds)
        self._frozen.set(frozen)
        log.debug("froze long-lived objects", extra={"seconds": seconds, "frozen": frozen})

    def start(self) -> None:
        """Freeze now, then every interval in the background until stop()."""
        self.freeze_now()
        self._task.start()

    async def stop(self) -> None:
        """Stop the background task (what is frozen stays frozen until the process exits)."""
        await self._task.stop()
