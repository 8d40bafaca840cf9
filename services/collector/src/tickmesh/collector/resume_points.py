"""Where each symbol's trade stream resumes after the collector process dies.

A SIGKILLed collector loses what it held in memory: trades sent but not acknowledged,
trades not sent yet, recorded gaps not yet backfilled. What it must not lose is the place
to start again. For each Binance symbol the collector keeps a durable mark: the highest
trade id such that every id of the stream up to it is durable at the bar service (acked,
or known not to exist). It is the lowest of the gap book's complete-through point (below
any recorded gap or open tail) and the lowest id still buffered in the ingest client,
minus one; it is written to Redis twice a second when it moves.

On start, each collected symbol's tracker begins at its mark with an open tail, so the
REST backfill fetches everything after it before (and while) the live stream runs. What
was durable past the mark already is dropped by the bar service's trade-id dedup: a
resume re-sends a little, and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import redis.asyncio as redis

from tickmesh.collector.binance.gap_book import GapBook, SymbolKey
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient

log = logging.getLogger(__name__)


def resume_key(stream_id: str) -> str:
    """Redis hash of one collector stream's durable marks (field "<exchange>:<symbol>")."""
    return f"collector:resume:{stream_id}"


def _field(key: SymbolKey) -> str:
    return f"{key[0]}:{key[1]}"


def _parse_field(field: str) -> SymbolKey:
    exchange, symbol = field.split(":", 1)
    return int(exchange), symbol


class ResumePoints:
    """Computes, saves and restores the durable mark of every tracked symbol."""

    def __init__(
        self,
        client: redis.Redis,
        stream_id: str,
        gaps: GapBook,
        ingest: IngestClient,
        metrics: CollectorMetrics,
        interval_s: float = 0.5,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._key = resume_key(stream_id)
        self._gaps = gaps
        self._ingest = ingest
        self._interval_s = interval_s
        self._saved: dict[SymbolKey, int] = {}

    def durable_marks(self) -> dict[SymbolKey, int]:
        """The durable mark of every symbol the gap book tracks."""
        buffered = self._ingest.lowest_buffered_ids()
        marks: dict[SymbolKey, int] = {}
        for key in list(self._gaps.trackers):
            mark = self._gaps.complete_through(key)
            if mark is None:
                continue
            low = buffered.get(key)
            marks[key] = mark if low is None else min(mark, low - 1)
        return marks

    async def restore(self, collected: Iterable[SymbolKey]) -> int:
        """Start the trackers of `collected` symbols at their saved marks; return how many."""
        saved = await self._client.hgetall(self._key)
        marks = {
            _parse_field(f.decode() if isinstance(f, bytes) else f): int(v)
            for f, v in saved.items()
        }
        restored = 0
        for key in collected:
            mark = marks.get(key)
            if mark is not None and self._gaps.resume_after(key, mark):
                self._saved[key] = mark
                restored += 1
        if restored:
            log.info("resuming %d symbols after their last durable trade ids", restored)
        return restored

    async def save(self) -> None:
        """Write the marks that moved since the last save."""
        moved = {
            key: mark
            for key, mark in self.durable_marks().items()
            if mark > self._saved.get(key, -1)
        }
        if moved:
            await self._client.hset(
                self._key, mapping={_field(key): str(mark) for key, mark in moved.items()}
            )
            self._saved.update(moved)

    async def run(self) -> None:
        """Save twice a second until cancelled; Redis trouble is logged and retried."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.save()
            except (redis.RedisError, OSError) as error:
                self._metrics.resume_save_errors.inc()
                log.warning("cannot save the resume points: %s", error)
