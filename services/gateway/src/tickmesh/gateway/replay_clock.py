"""The replay's virtual clock: commit times played at a speed, paused, resumed, sought.

The gateway merges a bar stream and an analytics stream, so it paces the merged stream itself
on one clock (both upstreams run at maximum speed, braked by flow control): each item is held
until its commit time comes round on this clock. Speed 0 is "max": no holding at all. As in
the services' own replay engine (core.replay), the first item of a replay sets the clock, so a
replay does not idle through an empty lead-in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

NS_PER_SECOND = 1_000_000_000


class ReplayClock:
    """Virtual commit time as a function of wall time, continuous across every change."""

    def __init__(
        self, position_ns: int, speed: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._now = now
        self._speed = speed
        self._anchor_ns = position_ns
        self._anchor_wall = now()
        self._set = False  # until the first item, the clock waits where the range starts
        self.paused = False

    @property
    def speed(self) -> float:
        """The pace: 1 is real time, 0 is as fast as the client reads."""
        return self._speed

    def position_ns(self) -> int:
        """The virtual commit time now."""
        if self.paused or self._speed == 0:
            return self._anchor_ns
        elapsed = self._now() - self._anchor_wall
        return self._anchor_ns + int(elapsed * self._speed * NS_PER_SECOND)

    def delay_seconds(self, committed_at_ns: int) -> float:
        """Wall seconds until an item committed at `committed_at_ns` is due (0: now)."""
        if self.paused:
            return float("inf")
        if self._speed == 0:
            return 0.0
        if not self._set:
            self.seek(max(committed_at_ns, self._anchor_ns))
        ahead_ns = committed_at_ns - self.position_ns()
        return max(ahead_ns, 0) / NS_PER_SECOND / self._speed

    def delivered(self, committed_at_ns: int) -> None:
        """An item went out: at maximum speed the clock is wherever the stream is."""
        if self._speed == 0 and committed_at_ns > self._anchor_ns:
            self._anchor_ns = committed_at_ns

    def seek(self, position_ns: int) -> None:
        """Continue from `position_ns` (a seek, or a catch-up after the client held us back)."""
        self._set = True
        self._anchor(position_ns)

    def _anchor(self, position_ns: int) -> None:
        self._anchor_ns = position_ns
        self._anchor_wall = self._now()

    def pause(self) -> None:
        """Stop the clock where it is."""
        if not self.paused:
            self._anchor(self.position_ns())
            self.paused = True

    def resume(self) -> None:
        """Restart the clock from where it stopped."""
        if self.paused:
            self.paused = False
            self._anchor_wall = self._now()

    def set_speed(self, speed: float) -> None:
        """Change the pace from now on, the position unchanged."""
        self._anchor(self.position_ns())
        self._speed = speed
