"""WarmupPrefetch: the warm-up history of streams first seen, fetched while earlier bars are processed.

A stream (instrument, timeframe) met for the first time is warmed from BarService.GetBars
before its bar is processed. Bars are processed one at a time, in stream order, so a whole
market's first minute (thousands of instruments at once) used to be thousands of GetBars round
trips in a row, and its indicators came minutes late. The consumer reads the stream a little
ahead and asks here for the history of each unseen stream as soon as its first bar is read;
a bounded number of fetches run at once, and processing takes each result in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from tickmesh.analytics.engine import StreamKey
from tickmesh.v2 import market_pb2

# Fetches the stored bars of a stream opening before an instant (ns), oldest first.
HistoryFetch = Callable[[StreamKey, int], Awaitable[list[market_pb2.Bar]]]


class WarmupPrefetch:
    """Warm-up fetches started ahead of processing, at most `concurrency` in flight."""

    def __init__(self, fetch: HistoryFetch, concurrency: int) -> None:
        self._fetch = fetch
        self._slots = asyncio.Semaphore(concurrency)
        # Each stream's fetch and the open time it fetches history before.
        self._pending: dict[StreamKey, tuple[int, asyncio.Task[list[market_pb2.Bar]]]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def request(self, key: StreamKey, before_ns: int) -> asyncio.Task[list[market_pb2.Bar]]:
        """Start fetching `key`'s history before `before_ns`, unless a fetch for it is pending;
        the fetch's task."""
        pending = self._pending.get(key)
        if pending is None:
            task = asyncio.create_task(self._bounded(key, before_ns), name=f"warm-up {key}")
            pending = self._pending[key] = (before_ns, task)
        return pending[1]

    def finished_before(self, key: StreamKey) -> int | None:
        """The open time `key`'s fetch ends before, once it has finished; None before then."""
        pending = self._pending.get(key)
        if pending is None or not pending[1].done():
            return None
        return pending[0]

    async def take(self, key: StreamKey, before_ns: int) -> list[market_pb2.Bar]:
        """The history of `key` before `before_ns`: the prefetched one if it matches, else fetched now.

        A failed prefetch raises here, where the consumer would have made the call itself.
        """
        pending = self._pending.pop(key, None)
        if pending is not None:
            fetched_before, task = pending
            if fetched_before == before_ns:
                return await task
            task.cancel()
        return await self._fetch(key, before_ns)

    def discard(self, key: StreamKey) -> None:
        """Drop `key`'s fetch, pending or finished (its stream was warmed some other way)."""
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    async def cancel(self) -> None:
        """Drop every pending fetch (the stream they were for has ended)."""
        tasks = [task for _, task in self._pending.values()]
        self._pending.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _bounded(self, key: StreamKey, before_ns: int) -> list[market_pb2.Bar]:
        async with self._slots:
            return await self._fetch(key, before_ns)
