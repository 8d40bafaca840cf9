"""Retention of bar revision history: superseded versions older than the setting are dropped.

TICKMESH_HISTORY_RETENTION_DAYS (0: keep forever). Every bar keeps its latest version, so
point-in-time reads stay exact from the horizon on; see bar_history.collapse_history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import asyncpg

from tickmesh.bars.bar_history import collapse_history
from tickmesh.core.periodic import PeriodicTask

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000
# Superseded versions are few (revisions are rare) and an hour of them is nothing to keep.
DEFAULT_INTERVAL_SECONDS = 3600.0


class HistoryRetention:
    """Collapses history older than `days` now and then; run by one shard (shard 0)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        days: int,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._pool = pool
        self._days = days
        self._clock_ns = clock_ns
        self._since_ns = 0
        # Retention can wait for the next round; the service must not stop for it.
        self._task = PeriodicTask("history retention", self.run_once, interval_seconds)

    async def run_once(self) -> int:
        """Collapse what is past the horizon now; the versions deleted (0 when kept forever)."""
        if self._days <= 0:
            return 0
        horizon = self._clock_ns() - self._days * NS_PER_DAY
        deleted = await collapse_history(self._pool, horizon, self._since_ns)
        self._since_ns = horizon
        if deleted:
            log.info("history retention dropped %d superseded bar versions", deleted)
        return deleted

    def start(self) -> None:
        """Run every interval in the background until stop()."""
        if self._days > 0:
            self._task.start()

    async def stop(self) -> None:
        """Stop the background task."""
        await self._task.stop()
