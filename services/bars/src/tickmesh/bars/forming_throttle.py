"""At most one forming update per instrument and timeframe per interval, sent as early as allowed.

The first change after a quiet interval goes out at the next tick (leading edge); changes
inside the interval are coalesced to the latest and sent when it ends (trailing edge). Items
are held as they come (the engine's changed forming bars, by name) and only the due ones are
turned into messages, since most changes inside an interval are replaced before they are sent.
A tick's cost follows what was offered and sent, not what waits: at a whole market about
12,000 keys are pending or cooling at any time, and a tick comes every 10 ms.
"""

from __future__ import annotations

from collections import deque
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
        # Keys with a pending item and no send within the interval, in the order they became so.
        self._free: dict[BarKey, None] = {}
        # Keys sent within the interval, and when, oldest first (the interval is one for all).
        self._cooling: set[BarKey] = set()
        self._sent: deque[tuple[int, BarKey]] = deque()

    def offer(self, items: list[T]) -> None:
        """Keep the latest forming item of each key."""
        key, pending, free, cooling = self._key, self._pending, self._free, self._cooling
        for item in items:
            name = key(item)
            pending[name] = item
            if name not in cooling:
                free[name] = None

    def due(self, now_ns: int) -> list[T]:
        """Take the pending items whose key has not been sent within the interval."""
        return self.make_due(now_ns, lambda item: item)

    def make_due(self, now_ns: int, make: Callable[[T], M | None]) -> list[M]:
        """Take the pending items whose key is free and make each; one that makes None (its bar
        became final meanwhile) is dropped and leaves its key free."""
        pending, free, cooling, sent = self._pending, self._free, self._cooling, self._sent
        cooled_until = now_ns - self._interval_ns
        while sent and sent[0][0] <= cooled_until:
            _, name = sent.popleft()
            cooling.discard(name)
            if name in pending:
                free[name] = None
        made: list[M] = []
        for name in free:
            message = make(pending.pop(name))
            if message is not None:
                made.append(message)
                cooling.add(name)
                sent.append((now_ns, name))
        free.clear()
        return made

    def forget_final(self, bars: list[market_pb2.Bar]) -> None:
        """Drop pending forming versions of bars that just became final."""
        for bar in bars:
            key = proto_key(bar)
            pending = self._pending.get(key)
            if pending is not None and pending.open_time_ns <= bar.open_time_ns:
                del self._pending[key]
                self._free.pop(key, None)
