"""The bar service's PostgreSQL adapter: candles, engine state, stream sequences, quarantine.

Every table is keyed by instrument: `candles` (and `bar_versions`) by its integer id in
`instruments` (see instrument_ids), the small tables by (exchange label, symbol). Prices and
volumes are numeric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tickmesh.bars import saved_state
from tickmesh.bars.bar_history import version_lines, write_versions
from tickmesh.bars.bar_rows import (
    CANDLE_COPY_COLUMNS,
    SELECT_CANDLE,
    CandleRows,
    bar_from_record,
    candle_rows,
    ns_to_datetime,
    streamed_candle_rows,
)
from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.instrument_ids import InstrumentIds
from tickmesh.core.db.bulk import UpsertSpec, insert_or_upsert, next_sequence_values, upsert
from tickmesh.core.db.copy_binary import BinaryRows
from tickmesh.core.db.instrument_keys import INSTRUMENT_ID_OF
from tickmesh.core.db.pool import Connection
from tickmesh.core.exchanges import exchange_proto
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.sharding import Shard
from tickmesh.core.timeframes import TIMEFRAMES
from tickmesh.v2 import market_pb2

# The writer takes each row's change id from candle_change_seq before writing it. Rows travel
# as binary COPY encoded by bar_rows.candle_rows: eight numeric columns cost asyncpg's Decimal
# encoder, or the server's numeric parser for text, more than the rest of the row.
CANDLES = UpsertSpec(
    table="candles",
    columns=CANDLE_COPY_COLUMNS,
    key=("instrument_id", "timeframe", "time"),
)
ENGINE_STATE = UpsertSpec(
    table="bar_engine_state",
    columns=("exchange", "symbol", "state"),
    key=("exchange", "symbol"),
    update_expressions={"updated_at": "now()"},
)
HISTORY_STATE = UpsertSpec(
    table="bar_history_state",
    columns=("exchange", "symbol", "state"),
    key=("exchange", "symbol"),
    update_expressions={"updated_at": "now()"},
)
ENGINE_FINALS = UpsertSpec(
    table="bar_engine_finals",
    columns=("exchange", "symbol", "timeframe", "open_time_ns", "bar"),
    key=("exchange", "symbol", "timeframe", "open_time_ns"),
)
STREAMS = UpsertSpec(
    table="ingest_streams",
    columns=("stream_id", "acked_sequence"),
    key=("stream_id",),
    update_expressions={"updated_at": "now()"},
)
QUARANTINE = UpsertSpec(
    table="quarantined_trades",
    columns=("exchange", "symbol", "kind", "trade_id", "price", "quantity", "event_time", "reason"),
    key=("exchange", "symbol", "kind", "trade_id"),
    update_columns=(),
)


async def write_candles(
    conn: Connection, updates: Sequence[BarUpdate], instrument_ids: Sequence[int]
) -> CandleRows:
    """Upsert the `candles` rows of final bars (keys unique); the rows, with their change ids.

    `instrument_ids`: each update's instrument id (InstrumentIds.of, outside the transaction).
    """
    change_ids = await next_sequence_values(conn, "candle_change_seq", len(updates))
    revisions = [update.revision for update in updates]
    # A bar final for the first time (revision 0) is a new row unless a restart replays it,
    # so those go in by plain COPY, streamed as they are encoded; revisions overwrite rows
    # that exist.
    if not any(revisions):
        streamed = streamed_candle_rows(updates, change_ids, instrument_ids)
        await insert_or_upsert(conn, CANDLES, streamed)
        return CandleRows(updates, change_ids, streamed.complete().fields, instrument_ids)
    new = [index for index, revision in enumerate(revisions) if revision == 0]
    revised = [index for index, revision in enumerate(revisions) if revision != 0]
    streamed = streamed_candle_rows(
        [updates[i] for i in new], [change_ids[i] for i in new], [instrument_ids[i] for i in new]
    )
    await insert_or_upsert(conn, CANDLES, streamed)
    rows = candle_rows(
        [updates[i] for i in revised],
        [change_ids[i] for i in revised],
        [instrument_ids[i] for i in revised],
    )
    await upsert(conn, CANDLES, BinaryRows(rows.fields, rows.keys))
    # Back in the order of `updates`, which the version rows and published bars follow.
    fields = [b""] * len(updates)
    for positions, part in ((new, streamed.complete().fields), (revised, rows.fields)):
        for index, candle in zip(positions, part, strict=True):
            fields[index] = candle
    return CandleRows(updates, change_ids, fields, instrument_ids)


@dataclass
class Commit:
    """Everything one group commit makes durable, in one transaction."""

    # The final or revised bars to write, one per key; each one's version row and the bar
    # live Subscribe publishes are made once its change id is known.
    candles: list[BarUpdate] = field(default_factory=list)
    # (exchange label, symbol, state as saved_state.encode made it)
    engine_states: list[tuple[str, str, bytes]] = field(default_factory=list)
    # (exchange label, symbol, timeframe label, open time ns, bar row as saved_state.encode made it)
    engine_finals: list[tuple[str, str, str, int, bytes]] = field(default_factory=list)
    # Retained final bars older than an instrument's horizon can no longer be revised: drop
    # them. Keyed by (exchange label, symbol).
    engine_horizons: dict[tuple[str, str], int] = field(default_factory=dict)
    stream_sequences: dict[str, int] = field(default_factory=dict)
    quarantine: list[tuple[object, ...]] = field(default_factory=list)
    # The history lane's heads (exchange label, symbol, saved state), see history_lane.
    history_states: list[tuple[str, str, bytes]] = field(default_factory=list)

    def is_empty(self) -> bool:
        """True when there is nothing to write."""
        return not (
            self.candles
            or self.engine_states
            or self.stream_sequences
            or self.quarantine
            or self.history_states
        )


class BarStore:
    """Reads and writes the tables the bar service owns."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: CoreMetrics,
        shard: Shard,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._shard = shard
        self._clock_ns = clock_ns
        self._last_committed_ns = 0
        self._instrument_ids = InstrumentIds()

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (the history reads share it)."""
        return self._pool

    def _commit_time_ns(self) -> int:
        # Microseconds, as timestamptz keeps them, so the published committed_at_ns equals the
        # stored one; never behind the previous commit, so commit times follow change ids.
        now = self._clock_ns() // 1000 * 1000
        self._last_committed_ns = max(now, self._last_committed_ns)
        return self._last_committed_ns

    async def load_engine_state(
        self,
    ) -> tuple[list[dict[str, Any]], list[tuple[int, str, str, list[Any]]]]:
        """The saved engine heads and retained final bars of every instrument this shard owns."""
        heads = await self._pool.fetch("SELECT exchange, symbol, state FROM bar_engine_state")
        finals = await self._pool.fetch(
            "SELECT exchange, symbol, timeframe, bar FROM bar_engine_finals "
            "ORDER BY exchange, symbol, timeframe, open_time_ns"
        )
        return (
            [saved_state.decode(r["state"]) for r in heads if self._owns(r)],
            [
                (
                    exchange_proto(r["exchange"]),
                    r["symbol"],
                    r["timeframe"],
                    saved_state.decode(r["bar"]),
                )
                for r in finals
                if self._owns(r)
            ],
        )

    async def load_history_state(self) -> list[dict[str, Any]]:
        """The saved history-lane heads of every instrument this shard owns."""
        rows = await self._pool.fetch("SELECT exchange, symbol, state FROM bar_history_state")
        return [saved_state.decode(r["state"]) for r in rows if self._owns(r)]

    def _owns(self, record: asyncpg.Record) -> bool:
        return self._shard.owns(InstrumentId.of(record["exchange"], record["symbol"]))

    async def newest_change_id(self) -> int:
        """The greatest change id of any stored bar version, 0 without any (its B-tree's end)."""
        newest = await self._pool.fetchval("SELECT max(change_id) FROM bar_versions")
        return int(newest or 0)

    async def load_stream_sequences(self) -> dict[str, int]:
        """The last durable sequence of every ingest stream."""
        rows = await self._pool.fetch("SELECT stream_id, acked_sequence FROM ingest_streams")
        return {r["stream_id"]: r["acked_sequence"] for r in rows}

    async def commit(self, commit: Commit) -> list[market_pb2.Bar]:
        """Write a group commit atomically; return each candle's bar as published, in order."""
        started = time.perf_counter()
        # Before the transaction: an id it assigned would stay cached if it rolled back.
        instrument_ids = await self._instrument_ids.of(self._pool, commit.candles)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await write_candles(conn, commit.candles, instrument_ids)
            lines, bars = version_lines(rows, self._commit_time_ns())
            await write_versions(conn, lines)
            await upsert(conn, ENGINE_STATE, commit.engine_states)
            await upsert(conn, ENGINE_FINALS, commit.engine_finals)
            await upsert(conn, HISTORY_STATE, commit.history_states)
            if commit.engine_horizons:
                # The engine prunes each timeframe at the horizon floored to its bar length.
                await conn.execute(
                    "DELETE FROM bar_engine_finals f "
                    "USING unnest($1::text[], $2::text[], $3::bigint[]) "
                    "AS h(exchange, symbol, horizon), "
                    "unnest($4::text[], $5::bigint[]) AS d(timeframe, duration) "
                    "WHERE f.exchange = h.exchange AND f.symbol = h.symbol "
                    "AND f.timeframe = d.timeframe "
                    "AND f.open_time_ns < h.horizon - h.horizon % d.duration",
                    [exchange for exchange, _ in commit.engine_horizons],
                    [symbol for _, symbol in commit.engine_horizons],
                    list(commit.engine_horizons.values()),
                    [tf.label for tf in TIMEFRAMES],
                    [tf.duration_ns for tf in TIMEFRAMES],
                )
            await upsert(conn, STREAMS, list(commit.stream_sequences.items()))
            await upsert(conn, QUARANTINE, commit.quarantine)
        self._metrics.db_write_latency.labels(table="group_commit").observe(
            time.perf_counter() - started
        )
        self._metrics.db_rows_written.labels(table="candles").inc(len(commit.candles))
        return bars

    async def fetch_range(
        self, instrument: InstrumentId, timeframe: str, start_ns: int, end_ns: int, limit: int
    ) -> list[market_pb2.Bar]:
        """The latest `limit` final bars of an instrument with start <= open time < end, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT $1::text AS exchange, $2::text AS symbol, {SELECT_CANDLE} FROM candles "
            f"WHERE instrument_id = {INSTRUMENT_ID_OF} "
            "AND timeframe = $3 AND time >= $4 AND time < $5 ORDER BY time DESC LIMIT $6",
            instrument.venue,
            instrument.symbol,
            timeframe,
            ns_to_datetime(start_ns),
            ns_to_datetime(end_ns),
            limit,
        )
        return [bar_from_record(r) for r in reversed(rows)]

    async def fetch_changes(
        self,
        after_change_id: int,
        instruments: Sequence[InstrumentId],
        timeframes: Sequence[str],
        limit: int,
    ) -> tuple[list[market_pb2.Bar], int | None]:
        """Persisted bars of this shard with a change id above `after_change_id`, in change-id
        order, and the last change id looked at (None when there was none): page on from it.

        `instruments` filters (empty: every instrument)."""
        rows = await self._pool.fetch(
            f"SELECT exchange, symbol, {SELECT_CANDLE} FROM candles "
            "JOIN instruments ON instruments.id = instrument_id WHERE change_id > $1 "
            "AND (cardinality($2::text[]) = 0 OR (exchange, symbol) IN "
            "(SELECT * FROM unnest($2::text[], $3::text[]))) "
            "AND (cardinality($4::text[]) = 0 OR timeframe = ANY($4::text[])) "
            "ORDER BY change_id LIMIT $5",
            after_change_id,
            [i.venue for i in instruments],
            [i.symbol for i in instruments],
            list(timeframes),
            limit,
        )
        last_seen = rows[-1]["change_id"] if rows else None
        return [bar_from_record(r) for r in rows if self._owns(r)], last_seen
