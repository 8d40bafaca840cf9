"""Bar revision history in `bar_versions`: written with each group commit, read as of an instant.

Every final bar and every revision gets a row in the same transaction as its `candles` upsert,
with the commit time and the change id of that write, and the serialized `tickmesh.v2.Bar`
exactly as live Subscribe publishes it (see 0008_bar_history.sql). Point in time T: per bar,
the greatest revision committed at or before T.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any

import asyncpg

from tickmesh.bars.bar_rows import (
    CANDLE_COPY_COLUMNS,
    SELECT_CANDLE,
    CandleRows,
    bar_from_record,
    datetime_to_ns,
    ns_to_datetime,
)
from tickmesh.core.db.bulk import UpsertSpec, insert_or_upsert
from tickmesh.core.db.copy_binary import PG_EPOCH_US, BinaryRows
from tickmesh.core.db.instrument_keys import INSTRUMENT_ID_OF
from tickmesh.core.db.pool import Connection
from tickmesh.core.errors import FailedPrecondition
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2

VERSIONS = UpsertSpec(
    table="bar_versions",
    columns=(*CANDLE_COPY_COLUMNS, "committed_at", "message"),
    key=("instrument_id", "timeframe", "time", "revision"),
    # A version, once stored, is what was known then: a restart that writes the same revision
    # again (the collector resending unacknowledged batches) must not move its commit time.
    update_columns=(),
)


def version_lines(
    rows: CandleRows, committed_at_ns: int
) -> tuple[BinaryRows, list[market_pb2.Bar]]:
    """The `bar_versions` rows (binary COPY) of one commit and the bars live Subscribe publishes.

    A row is the candle's binary fields (change id included) plus the commit time and the
    serialized bar as it is (bytea in binary needs no hex): nothing per numeric column.
    """
    committed = struct.pack(">iq", 8, committed_at_ns // 1000 - PG_EPOCH_US)
    fields: list[bytes] = []
    bars: list[market_pb2.Bar] = []
    for candle, update, change_id in zip(rows.fields, rows.updates, rows.change_ids, strict=True):
        bar = update.to_proto(change_id)
        bar.committed_at_ns = committed_at_ns
        message = bar.SerializeToString()
        fields.append(b"".join((candle, committed, struct.pack(">i", len(message)), message)))
        bars.append(bar)

    def keys() -> list[tuple[Any, ...]]:
        return [(*key, u.revision) for key, u in zip(rows.keys(), rows.updates, strict=True)]

    return BinaryRows(fields, keys), bars


async def write_versions(conn: Connection, lines: BinaryRows) -> None:
    """Append version rows (from version_lines) inside the caller's transaction."""
    # Versions are new rows but for a restart's rewrite: plain COPY, ON CONFLICT only then.
    await insert_or_upsert(conn, VERSIONS, lines)


def bar_from_version(record: asyncpg.Record) -> market_pb2.Bar:
    """The Bar of a version row: its logged message, else (rows from before history) its columns."""
    message: bytes | None = record["message"]
    if message is not None:
        return market_pb2.Bar.FromString(message)
    return bar_from_record(record)


async def history_start_ns(pool: asyncpg.Pool) -> int | None:
    """The instant before which as_of cannot be answered exactly; None when history is whole."""
    started: datetime | None = await pool.fetchval("SELECT started_at FROM bar_history_start")
    return None if started is None else datetime_to_ns(started)


async def fetch_as_of(
    pool: asyncpg.Pool,
    instrument: InstrumentId,
    timeframe: str,
    start_ns: int,
    end_ns: int,
    limit: int,
    as_of_ns: int,
) -> list[market_pb2.Bar]:
    """The latest `limit` bars with start <= open time < end as known at `as_of_ns`, oldest first.

    FailedPrecondition when `as_of_ns` is before the recorded start of history (see 0008)."""
    started = await history_start_ns(pool)
    if started is not None and as_of_ns < started:
        raise FailedPrecondition(
            f"as_of_ns: bar history is kept from {ns_to_datetime(started).isoformat()} "
            f"({started}); what was known before then is not recorded"
        )
    # DISTINCT ON over the primary key read backwards: the first row of each open time is its
    # greatest revision committed by then. A bar with no version by then was not final then.
    rows = await pool.fetch(
        f"SELECT DISTINCT ON (time) $1::text AS exchange, $2::text AS symbol, {SELECT_CANDLE}, "
        f"message FROM bar_versions WHERE instrument_id = {INSTRUMENT_ID_OF} AND timeframe = $3 "
        "AND time >= $4 AND time < $5 AND committed_at <= $6 "
        "ORDER BY time DESC, revision DESC LIMIT $7",
        instrument.venue,
        instrument.symbol,
        timeframe,
        ns_to_datetime(start_ns),
        ns_to_datetime(end_ns),
        _as_of_datetime(as_of_ns),
        limit,
    )
    return [bar_from_version(r) for r in reversed(rows)]


def _as_of_datetime(as_of_ns: int) -> datetime:
    # Commit times are stored to the microsecond; a version committed within the instant's
    # microsecond was known at it only if it is not after it, so round down.
    return ns_to_datetime(max(as_of_ns, 0))


async def collapse_history(pool: asyncpg.Pool, horizon_ns: int, since_ns: int = 0) -> int:
    """Retention: drop versions committed in [since, horizon) that a version also committed
    before the horizon supersedes; the rows deleted.

    Every bar keeps its latest version, so as_of reads at or after the horizon stay exact and
    the bar itself is never lost. When anything was dropped, bar_history_start moves up to the
    horizon, so as_of reads before it are refused rather than answered from what is left.
    `since_ns` is the previous run's horizon: everything before it was collapsed already.
    """
    horizon = ns_to_datetime(horizon_ns)
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.execute(
            "DELETE FROM bar_versions v WHERE v.committed_at < $1 AND v.committed_at >= $2 "
            "AND EXISTS (SELECT 1 FROM bar_versions w WHERE w.instrument_id = v.instrument_id "
            "AND w.timeframe = v.timeframe AND w.time = v.time "
            "AND w.revision > v.revision AND w.committed_at < $1)",
            horizon,
            ns_to_datetime(since_ns),
        )
        deleted = int(status.rsplit(" ", 1)[-1])
        if not deleted:
            return 0
        await conn.execute(
            "INSERT INTO bar_history_start (started_at) VALUES ($1) ON CONFLICT (only_row) "
            "DO UPDATE SET started_at = greatest(bar_history_start.started_at, EXCLUDED.started_at)",
            horizon,
        )
    return deleted
