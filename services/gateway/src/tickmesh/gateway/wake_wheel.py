"""Shared wake-up times for WebSocket push loops: one event-loop timer per 5 ms, not per client.

Every client of a symbol gets the same upstream bar at the same moment, so their throttles fall
due together. Arming a timer per client cost more than the pushes themselves with thousands of
clients; here a due time is rounded up to the next 5 ms slot (never early, so the throttle still
holds) and each slot has one timer that wakes everyone in it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

SLOT_SECONDS = 0.005


class WakeWheel:
    """Callbacks grouped by the 5 ms slot they are due in (event-loop time)."""

    def __init__(self, slot_seconds: float = SLOT_SECONDS) -> None:
        self._slot = slot_seconds
        self._slots: dict[int, list[Callable[[], None]]] = {}

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run `callback` at the end of the slot holding loop time `when` (at or after it)."""
        slot = math.ceil(when / self._slot)
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = []
            asyncio.get_running_loop().call_at(slot * self._slot, self._fire, slot)
        waiting.append(callback)

    def _fire(self, slot: int) -> None:
        for callback in self._slots.pop(slot, ()):
            callback()
