"""Where the ingest stream's sequence survives a collector restart, and rejected batches are kept.

The stream id is stable across restarts, so a restarted collector must not reuse a
sequence the bar service has already applied (it would drop those batches as re-sends).
Before a batch is written, its sequence is recorded here; on start the client continues
after the highest recorded one. A crash between recording and writing leaves a jump in
the sequence, which the bar service accepts.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Protocol

import redis.asyncio as redis

from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)

REJECTED_KEEP = 10_000


def rejected_key(stream_id: str) -> str:
    """Redis list of the batches the bar service rejected (newest first, at most REJECTED_KEEP)."""
    return f"collector:rejected:{stream_id}"


async def keep_rejected(client: redis.Redis, batch: market_pb2.TradeBatch, reason: str) -> None:
    """Keep a rejected batch for inspection: JSON with its sequence, the reason, the batch."""
    entry = json.dumps(
        {
            "sequence": batch.sequence,
            "reason": reason,
            "batch": base64.b64encode(batch.SerializeToString()).decode(),
        }
    )
    key = rejected_key(batch.stream_id)
    try:
        await client.lpush(key, entry)
        await client.ltrim(key, 0, REJECTED_KEEP - 1)
    except (redis.RedisError, OSError) as error:
        # The batch is already counted and logged as rejected; only its copy is lost.
        log.warning("cannot keep rejected batch %d in Redis: %s", batch.sequence, error)


def sequence_key(stream_id: str) -> str:
    """Redis hash of one ingest stream's state."""
    return f"collector:ingest:{stream_id}"


class SequenceStore(Protocol):
    """Keeps the highest sequence a stream may have written."""

    async def load(self, stream_id: str) -> int:
        """The highest recorded sequence, 0 for a new stream."""
        ...

    async def reserve(self, stream_id: str, through: int) -> None:
        """Record that sequences up to `through` may have been written."""
        ...


class MemorySequenceStore:
    """A per-process store: for imports and tests whose stream ids are fresh each run."""

    def __init__(self) -> None:
        self._sequences: dict[str, int] = {}

    async def load(self, stream_id: str) -> int:
        """The highest recorded sequence, 0 for a new stream."""
        return self._sequences.get(stream_id, 0)

    async def reserve(self, stream_id: str, through: int) -> None:
        """Record the sequence in memory."""
        self._sequences[stream_id] = max(through, self._sequences.get(stream_id, 0))


class RedisSequenceStore:
    """The collector's store: one Redis hash per stream (field `sequence`)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def load(self, stream_id: str) -> int:
        """The highest recorded sequence, 0 for a new stream."""
        value = await self._client.hget(sequence_key(stream_id), "sequence")
        return int(value) if value is not None else 0

    async def reserve(self, stream_id: str, through: int) -> None:
        """Record the sequence; one writer per stream, whose sequences only grow."""
        await self._client.hset(sequence_key(stream_id), "sequence", str(through))
