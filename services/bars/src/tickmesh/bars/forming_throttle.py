"""At most one forming update per instrument and timeframe per interval, sent as early as allowed.

The first change after a quiet interval goes out at the next tick (leading edge); changes
inside the interval are coalesced to the latest and sent when it ends (trailing edge). Items
are held as they come (the engine's changed forming bars, by name) and only the due ones are
turned into messages, since most changes inside an interval are replaced before they are sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from tickmesh.v2 import market_pb2

BarKey = tuple[int, str, int]  # exchange enum, symbol, timeframe enum


class _Timed(Protocol):
    @property
    def open_time_ns(self) -> int: ...


T = TypeVar("T", bound=_Timed)
M = TypeVar("M")


def proto_key(bar: market_pb2.Bar) -> BarKey:
    """The throttle key of a bar message."""
    return (bar.exchange, bar.symbol, bar.timeframe)


class FormingThrottle(Generic[T]):
    """Holds the latest forming item per key until its interval allows sending it."""

    def __init__(self, interval_ns: int, key: Callable[[T], BarKey]) -> None:
        self._interval_ns = interval_ns
        self._key = key
        self._pending: dict[BarKey, T] = {}
        self._last_sent_ns: dict[BarKey, int] = {}

    def offer(self, items: list[T]) -> None:
        """Keep the latest forming item of each key."""
        key = self._key
        for item in items:
            self._pending[key(item)] = item

    def due(self, now_ns: int) -> list[T]:
        """Take the pending items whose key has not been sent within the interval."""
        return self.make_due(now_ns, lambda item: item)

    def make_due(self, now_ns: int, make: Callable[[T], M | None]) -> list[M]:
        """Take the pending items whose key is free and make each; one that makes None (its bar
        became final meanwhile) is dropped and leaves its key free."""
        ready = [
            key
            for key in self._pending
            if now_ns - self._last_sent_ns.get(key, -self._interval_ns) >= self._interval_ns
        ]
        made: list[M] = []
        for key in ready:
            message = make(self._pending.pop(key))
            if message is not None:
                made.append(message)
                self._last_sent_ns[key] = now_ns
        return made

    def forget_final(self, bars: list[market_pb2.Bar]) -> None:
        """Drop pending forming versions of bars that just became final."""
        for bar in bars:
            key = proto_key(bar)
            pending = self._pending.get(key)
            if pending is not None and pending.open_time_ns <= bar.open_time_ns:
                del self._pending[key]
