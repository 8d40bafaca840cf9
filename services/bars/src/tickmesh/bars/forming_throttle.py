"""At most one forming update per instrument and timeframe per interval, sent as early as allowed.

The first change after a quiet interval goes out at the next tick (leading edge); changes
inside the interval are coalesced to the latest and sent when it ends (trailing edge).
"""

from __future__ import annotations

from tickmesh.v2 import market_pb2

BarKey = tuple[int, str, int]  # exchange enum, symbol, timeframe enum


def _key(bar: market_pb2.Bar) -> BarKey:
    return (bar.exchange, bar.symbol, bar.timeframe)


class FormingThrottle:
    """Holds the latest forming bar per key until its interval allows sending it."""

    def __init__(self, interval_ns: int) -> None:
        self._interval_ns = interval_ns
        self._pending: dict[BarKey, market_pb2.Bar] = {}
        self._last_sent_ns: dict[BarKey, int] = {}

    def offer(self, bars: list[market_pb2.Bar]) -> None:
        """Keep the latest forming bar of each key."""
        for bar in bars:
            self._pending[_key(bar)] = bar

    def due(self, now_ns: int) -> list[market_pb2.Bar]:
        """Take the pending bars whose key has not been sent within the interval."""
        ready: list[market_pb2.Bar] = []
        for key, bar in self._pending.items():
            if now_ns - self._last_sent_ns.get(key, -self._interval_ns) >= self._interval_ns:
                ready.append(bar)
        for bar in ready:
            key = _key(bar)
            del self._pending[key]
            self._last_sent_ns[key] = now_ns
        return ready

    def forget_final(self, bars: list[market_pb2.Bar]) -> None:
        """Drop pending forming versions of bars that just became final."""
        for bar in bars:
            pending = self._pending.get(_key(bar))
            if pending is not None and pending.open_time_ns <= bar.open_time_ns:
                del self._pending[_key(bar)]
