"""HistoryRetention: the periodic delete of analytics history older than the configured days."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.history_store import delete_expired_history

log = logging.getLogger(__name__)

_NS_PER_DAY = 86_400 * 1_000_000_000


class HistoryRetention:
    """Deletes history no read within the last `days` needs, every `interval_seconds`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: AnalyticsMetrics,
        days: int,
        interval_seconds: float,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._days = days
        self._interval_seconds = interval_seconds
        self._clock_ns = clock_ns

    async def prune_once(self) -> dict[str, int]:
        """Delete what is past the horizon now; rows deleted per table (nothing when days is 0)."""
        if self._days == 0:
            return {}
        horizon_ns = self._clock_ns() - self._days * _NS_PER_DAY
        deleted = await delete_expired_history(self._pool, horizon_ns)
        for table, count in deleted.items():
            self._metrics.history_rows_deleted.labels(table=table).inc(count)
        return deleted

    async def run(self) -> None:
        """Prune now and then every interval, until cancelled; a failed round is retried next time."""
        if self._days == 0:
            return  # 0 keeps history forever
        while True:
            try:
                deleted = await self.prune_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                # Retention is housekeeping: the service keeps serving, the next round retries.
                log.warning("analytics history retention failed", extra={"error": repr(error)})
            else:
                if any(deleted.values()):
                    log.info("analytics history pruned", extra={"deleted": deleted})
            await asyncio.sleep(self._interval_seconds)
