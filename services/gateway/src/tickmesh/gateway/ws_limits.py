"""Counting limits of the WebSocket route: sockets per key, and messages per socket.

Pure logic, no I/O. The counts are this replica's own: a socket lives on one process, and
what each bound protects (memory, file descriptors, the event loop) is that process's.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class Slots(Generic[Key]):
    """At most `limit` holders per key at once (a client address, a user id)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[Key, int] = {}

    def take(self, key: Key) -> bool:
        """Hold one slot of `key`; False (nothing held) when all its slots are taken."""
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def give_back(self, key: Key) -> None:
        """Release one slot of `key` taken before."""
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            # Dropped at zero, so addresses seen once do not pile up in memory.
            self._held.pop(key, None)

    def held(self, key: Key) -> int:
        """How many slots of `key` are held."""
        return self._held.get(key, 0)


class MessageBucket:
    """A token bucket: `burst` messages at once, then `per_second` on average."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        """Spend one token for a message arriving `now`; False when the bucket is empty."""
        now = time.monotonic() if now is None else now
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
