"""GroupCommitter: the consumer's pending bars, written in groups, each in one transaction.

After a commit the updates are handed to live subscribers and the Redis hashes refreshed,
so neither ever shows a row the database does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
import redis.asyncio as redis
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from tickmesh.analytics.analytics_cache import AnalyticsCache
from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.engine import PendingBatch
from tickmesh.analytics.history import EncodedUpdate
from tickmesh.analytics.hub import AnalyticsHub
from tickmesh.analytics.store import AnalyticsStore

log = logging.getLogger(__name__)

# Connection-level trouble is worth retrying; a constraint or SQL error would fail again.
_TRANSIENT_DB_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class GroupCommitter:
    """Collects what the consumer computed and commits it in groups."""

    def __init__(
        self,
        store: AnalyticsStore,
        cache: AnalyticsCache,
        hub: AnalyticsHub,
        metrics: AnalyticsMetrics,
        interval_seconds: float,
        max_bars: int,
        bars_shard: int = 0,
    ) -> None:
        self._store = store
        self._cache = cache
        self._hub = hub
        self._metrics = metrics
        # One committer per bar shard's stream, each with its own resume point.
        self._resume_gauge = metrics.resume_change_id.labels(bars_shard=str(bars_shard))
        self._interval_seconds = interval_seconds
        self._max_bars = max_bars
        self.batch = PendingBatch()
        self.stored_change_id: int | None = None
        self._lock = asyncio.Lock()
        self._work = asyncio.Event()

    def start_from(self, change_id: int | None) -> None:
        """Set the resume point read from storage at start."""
        self.stored_change_id = change_id
        if change_id is not None:
            self._resume_gauge.set(change_id)

    async def after_bar(self) -> None:
        """Wake the writer; past N pending bars wait for a commit, so memory stays bounded."""
        self._work.set()
        if self.batch.bars >= self._max_bars:
            await self.flush()

    async def run(self) -> None:
        """Commit pending work as soon as the writer gets a turn, until cancelled.

        A lone bar is stored within one commit's time; under load the bars that arrive while
        a commit is in flight form the next group, so groups grow with the load by themselves.
        The interval bounds the wait should a wake-up ever be missed.
        """
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout=self._interval_seconds)
            self._work.clear()
            await self.flush()

    async def flush(self) -> None:
        """Commit the pending batch now (rows and resume point together), then cache and publish."""
        async with self._lock:
            batch = self.batch
            if batch.is_empty():
                return
            self.batch = PendingBatch()
            started = time.perf_counter()
            published = await self._commit_with_retry(batch)
            if batch.last_change_id is not None:
                self.stored_change_id = batch.last_change_id
                self._resume_gauge.set(batch.last_change_id)
            # Subscribers first: nothing in the mesh reads the hashes (they are the seed's keys
            # for outside readers), and at a whole market's minute close refreshing them took
            # a few hundred ms that the indicators' subscribers would otherwise wait for.
            self._hub.publish(published)
            await self._refresh_cache(batch)
            self._metrics.commit_seconds.observe(time.perf_counter() - started)

    async def _commit_with_retry(self, batch: PendingBatch) -> list[EncodedUpdate]:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT_DB_ERRORS),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
            before_sleep=self._log_commit_failure,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._store.commit(batch)
        raise AssertionError("unreachable: AsyncRetrying reraises the last error")

    def _log_commit_failure(self, state: RetryCallState) -> None:
        self._metrics.commit_failures.inc()
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "analytics commit failed, retrying",
            extra={"attempt": state.attempt_number, "error": repr(error), "bars": self.batch.bars},
        )

    async def _refresh_cache(self, batch: PendingBatch) -> None:
        try:
            await self._cache.put_latest(batch.indicators, batch.features)
        except (redis.RedisError, OSError) as error:
            # Redis is a cache of committed rows; the next commit of the stream refreshes it.
            self._metrics.cache_failures.inc()
            log.warning("analytics cache update failed", extra={"error": repr(error)})
