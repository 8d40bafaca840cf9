"""Read-through Redis cache of the latest final bars: `bars:{venue}:{symbol}:{timeframe}` sorted sets.

Each set holds the latest N final bars (score: open time in ms, member: the serialized
`tickmesh.v2.Bar`) and is complete from its oldest member on, because every final and
revision is written to it after its commit. A set that may have missed a write is deleted,
so the next read misses and reloads it from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import redis.asyncio as redis
from prometheus_client import Counter

from tickmesh.core.cache import bars_key, replace_in_capped_zsets
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.timeframes import from_proto
from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000

LoadLatest = Callable[[InstrumentId, str, int], Awaitable[list[market_pb2.Bar]]]


class BarCache:
    """The latest bars per instrument and timeframe in Redis; the bar service is its only writer."""

    def __init__(self, client: redis.Redis, metrics: CoreMetrics, size: int) -> None:
        self._client = client
        self._size = size
        # One lock per set orders its reload against commits, so neither loses a bar. Sets are
        # independent: a whole market's first reads (thousands of sets, each a PostgreSQL read)
        # reload side by side instead of one after another behind every commit.
        self._locks: dict[str, asyncio.Lock] = {}
        self._stale: set[str] = set()
        self.lookups = Counter(
            "tickmesh_bar_cache_lookups",
            "GetBars reads, by result (hit or miss).",
            ["result"],
            registry=metrics.registry,
        )
        self.errors = Counter(
            "tickmesh_bar_cache_errors",
            "Redis errors of the bar cache (reads fall back to PostgreSQL).",
            registry=metrics.registry,
        )

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def put(self, bars: Sequence[market_pb2.Bar]) -> None:
        """Add final or revised bars (a revision replaces its earlier version)."""
        grouped: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        for bar in bars:
            instrument = InstrumentId(int(bar.exchange), bar.symbol)
            key = bars_key(instrument, from_proto(bar.timeframe).label)
            grouped[key].append((bar.open_time_ns // NS_PER_MS, bar.SerializeToString()))
        async with contextlib.AsyncExitStack() as locked:
            # In one order (sorted), so two writers never wait on each other's sets.
            for key in sorted(grouped.keys() | self._stale):
                await locked.enter_async_context(self._lock(key))
            try:
                if self._stale:
                    await self._client.delete(*self._stale)
                    self._stale.clear()
                await replace_in_capped_zsets(self._client, grouped, self._size)
            except (redis.RedisError, OSError) as error:
                self.errors.inc()
                self._stale.update(grouped)
                log.warning("bar cache write failed, %d sets marked stale: %s", len(grouped), error)

    async def get_range(
        self,
        instrument: InstrumentId,
        timeframe: int,
        start_ns: int,
        end_ns: int,
        limit: int,
        load_latest: LoadLatest,
    ) -> list[market_pb2.Bar] | None:
        """The latest `limit` bars in [start, end), from Redis when it holds them all; None on a miss.

        On a miss of an empty set, the latest N bars are loaded with `load_latest` so the next
        read hits.
        """
        key = bars_key(instrument, from_proto(timeframe).label)
        try:
            found = await self._read(key, start_ns, end_ns, limit)
            if found is None:
                label = from_proto(timeframe).label
                await self._reload_if_empty(key, instrument, label, load_latest)
        except (redis.RedisError, OSError) as error:
            self.errors.inc()
            log.warning("bar cache read failed: %s", error)
            found = None
        self.lookups.labels(result="miss" if found is None else "hit").inc()
        return found

    async def _read(
        self, key: str, start_ns: int, end_ns: int, limit: int
    ) -> list[market_pb2.Bar] | None:
        oldest = await self._client.zrange(key, 0, 0, withscores=True)
        if not oldest or key in self._stale:
            return None
        oldest_ms = int(oldest[0][1])
        members = await self._client.zrevrangebyscore(
            key, f"({end_ns // NS_PER_MS}", start_ns // NS_PER_MS, start=0, num=limit
        )
        # The set is complete from its oldest member on: the answer is whole when the range
        # starts inside it, or when it already filled the limit.
        if start_ns // NS_PER_MS < oldest_ms and len(members) < limit:
            return None
        return [market_pb2.Bar.FromString(cast(bytes, m)) for m in reversed(members)]

    async def _reload_if_empty(
        self, key: str, instrument: InstrumentId, timeframe: str, load_latest: LoadLatest
    ) -> None:
        async with self._lock(key):
            if await self._client.exists(key) and key not in self._stale:
                return
            bars = await load_latest(instrument, timeframe, self._size)
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if bars:
                    pipe.zadd(
                        key, {b.SerializeToString(): b.open_time_ns // NS_PER_MS for b in bars}
                    )
                await pipe.execute()
            self._stale.discard(key)
