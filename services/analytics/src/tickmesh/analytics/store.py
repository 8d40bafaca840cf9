"""The analytics service's PostgreSQL adapter: indicators, ml_features, data_quality_metrics, resume point."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from tickmesh.analytics.engine import PendingBatch
from tickmesh.analytics.feature_layouts import FeatureLayouts
from tickmesh.analytics.history import (
    BAR_VERSION_COLUMNS,
    QUALITY_VERSION_COLUMNS,
    CommitClock,
    EncodedUpdate,
    encode_updates,
    history_rows,
    log_updates,
    upsert_versioned,
    versioned_table,
)
from tickmesh.analytics.history_store import VersionQuery, fetch_versions, quality_as_of
from tickmesh.analytics.results import Features, Indicators, Quality
from tickmesh.analytics.rows import (
    FEATURE_COLUMNS,
    FEATURE_READ_COLUMNS,
    INDICATOR_COLUMNS,
    QUALITY_COLUMNS,
    feature_row,
    features_from_record,
    indicator_row,
    indicators_from_record,
    ns_to_datetime,
    quality_from_record,
    quality_row,
)
from tickmesh.core.db.bulk import UpsertSpec, upsert
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics

# The primary key of migration 0005, in its order (upsert sorts rows by it).
_ROW_KEY = ("exchange", "symbol", "timeframe", "time")
INDICATORS = UpsertSpec(table="indicators", columns=INDICATOR_COLUMNS, key=_ROW_KEY)
FEATURES = UpsertSpec(table="ml_features", columns=FEATURE_COLUMNS, key=_ROW_KEY)
QUALITY = UpsertSpec(table="data_quality_metrics", columns=QUALITY_COLUMNS, key=_ROW_KEY)
# Each live table with its version table (migration 0009): the version's own columns follow.
INDICATOR_HISTORY = versioned_table(INDICATORS, "indicator_versions", BAR_VERSION_COLUMNS)
FEATURE_HISTORY = versioned_table(FEATURES, "feature_versions", BAR_VERSION_COLUMNS)
QUALITY_HISTORY = versioned_table(QUALITY, "quality_versions", QUALITY_VERSION_COLUMNS)
CONSUMER_STATE = UpsertSpec(
    table="analytics_consumer_state",
    columns=("consumer", "last_change_id"),
    key=("consumer",),
    update_expressions={"updated_at": "now()"},
    # A resume point never moves back (e.g. a stale replica committing late).
    only_if="analytics_consumer_state.last_change_id < EXCLUDED.last_change_id",
)

# The version table of each live table a range read may be answered from.
_VERSION_TABLE = {"indicators": "indicator_versions", "ml_features": "feature_versions"}

# Far past any bar, so an open upper bound needs no second query shape.
_END_OF_TIME_NS = 2**62

# A replay page's position: (open time ns, venue label, symbol, timeframe label).
ReplayKey = tuple[int, str, str, str]

# A subscription's instrument filter as two parallel arrays (venues, symbols); empty = all.
_WANTED_INSTRUMENT = (
    "(cardinality({venues}::text[]) = 0 OR ({alias}exchange, {alias}symbol) IN "
    "(SELECT * FROM unnest({venues}::text[], {symbols}::text[])))"
)


def _instrument_arrays(instruments: list[InstrumentId]) -> tuple[list[str], list[str]]:
    return [i.venue for i in instruments], [i.symbol for i in instruments]


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """Rows of one instrument and timeframe with start <= open time < end, the latest `limit` kept.

    With `as_of_ns`, the rows as known at that instant (from the version tables).
    """

    instrument: InstrumentId
    timeframe: str
    start_ns: int
    end_ns: int
    limit: int
    as_of_ns: int | None = None


class AnalyticsStore:
    """Reads and writes the tables the analytics service owns."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: CoreMetrics,
        consumer: str,
        commit_clock: CommitClock | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._consumer = consumer
        self._commit_clock = commit_clock or CommitClock()
        self._layouts = FeatureLayouts()

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (history reads share it)."""
        return self._pool

    async def load_resume_point(self) -> int | None:
        """The change id of the last bar whose analytics were stored, None before the first."""
        value = await self._pool.fetchval(
            "SELECT last_change_id FROM analytics_consumer_state WHERE consumer = $1",
            self._consumer,
        )
        return None if value is None else int(value)

    async def commit(self, batch: PendingBatch) -> list[EncodedUpdate]:
        """Write a batch's rows, their versions, its updates and its resume point in one
        transaction (all or nothing); return the updates as stamped and serialized for the log."""
        started = time.perf_counter()
        layouts = await self._layouts.of(self._pool, [f.values for f in batch.features])
        committed_at_ns = self._commit_clock.stamp()
        history = history_rows(
            [indicator_row(i) for i in batch.indicators],
            [feature_row(f, layout) for f, layout in zip(batch.features, layouts, strict=True)],
            [quality_row(q) for q in batch.qualities],
            batch.revisions,
            encode_updates(batch.updates, committed_at_ns),
            committed_at_ns,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await upsert_versioned(conn, INDICATOR_HISTORY, history.indicators)
            await upsert_versioned(conn, FEATURE_HISTORY, history.features)
            await upsert_versioned(conn, QUALITY_HISTORY, history.qualities)
            await log_updates(conn, history)
            if batch.last_change_id is not None:
                await upsert(conn, CONSUMER_STATE, [(self._consumer, batch.last_change_id)])
        self._metrics.db_write_latency.labels(table="analytics_group_commit").observe(
            time.perf_counter() - started
        )
        self._metrics.db_rows_written.labels(table="indicators").inc(len(batch.indicators))
        self._metrics.db_rows_written.labels(table="ml_features").inc(len(batch.features))
        self._metrics.db_rows_written.labels(table="data_quality_metrics").inc(len(batch.qualities))
        return list(history.updates)

    async def fetch_indicators(self, query: RangeQuery) -> list[Indicators]:
        """Indicator rows of the range, oldest first."""
        rows = await self._fetch_range("indicators", ", ".join(INDICATOR_COLUMNS), query)
        return [indicators_from_record(row) for row in rows]

    async def fetch_features(self, query: RangeQuery) -> list[Features]:
        """Feature rows of the range, oldest first."""
        rows = await self._fetch_range("ml_features", ", ".join(FEATURE_READ_COLUMNS), query)
        return [features_from_record(row) for row in rows]

    async def _fetch_range(
        self, table: str, columns: str, query: RangeQuery
    ) -> list[asyncpg.Record]:
        if query.as_of_ns is not None:
            versions = _VERSION_TABLE[table]
            return await fetch_versions(
                self._pool,
                versions,
                columns,
                VersionQuery(
                    query.instrument,
                    query.timeframe,
                    query.start_ns,
                    query.end_ns,
                    query.limit,
                    query.as_of_ns,
                ),
            )
        rows = await self._pool.fetch(
            f"SELECT {columns} FROM {table} WHERE exchange = $1 AND symbol = $2 "
            "AND timeframe = $3 AND time >= $4 AND time < $5 ORDER BY time DESC LIMIT $6",
            query.instrument.venue,
            query.instrument.symbol,
            query.timeframe,
            ns_to_datetime(query.start_ns),
            ns_to_datetime(query.end_ns or _END_OF_TIME_NS),
            query.limit,
        )
        return list(reversed(rows))

    async def latest_quality(
        self, instrument: InstrumentId, timeframe: str, as_of_ns: int | None = None
    ) -> Quality | None:
        """The newest quality assessment of an instrument and timeframe (stored by `as_of_ns` if
        given), None before the first."""
        if as_of_ns is not None:
            columns = ", ".join(QUALITY_COLUMNS)
            found = await quality_as_of(self._pool, columns, instrument, timeframe, as_of_ns)
            return None if found is None else quality_from_record(found)
        row = await self._pool.fetchrow(
            f"SELECT {', '.join(QUALITY_COLUMNS)} FROM data_quality_metrics "
            "WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 ORDER BY time DESC LIMIT 1",
            instrument.venue,
            instrument.symbol,
            timeframe,
        )
        return None if row is None else quality_from_record(row)

    async def fetch_updates_page(
        self,
        after: ReplayKey,
        instruments: list[InstrumentId],
        timeframes: list[str],
        limit: int,
    ) -> list[tuple[Indicators, Features | None]]:
        """Stored bars after `after` = (open time ns, venue, symbol, timeframe), in that order, with their features.

        Keyset paging: pass the last returned key as the next `after`.
        """
        time_ns, venue, symbol, timeframe = after
        columns = ", ".join(f"i.{c}" for c in INDICATOR_COLUMNS)
        venues, symbols = _instrument_arrays(instruments)
        rows = await self._pool.fetch(
            f"SELECT {columns}, f.feature_version, f.features FROM indicators i "
            "LEFT JOIN ml_features f USING (exchange, symbol, timeframe, time) "
            "WHERE (i.time, i.exchange, i.symbol, i.timeframe) > ($1, $2, $3, $4) "
            f"AND {_WANTED_INSTRUMENT.format(alias='i.', venues='$5', symbols='$6')} "
            "AND (cardinality($7::text[]) = 0 OR i.timeframe = ANY($7::text[])) "
            "ORDER BY i.time, i.exchange, i.symbol, i.timeframe LIMIT $8",
            ns_to_datetime(time_ns),
            venue,
            symbol,
            timeframe,
            venues,
            symbols,
            timeframes,
            limit,
        )
        return [
            (
                indicators_from_record(row),
                None if row["features"] is None else features_from_record(row),
            )
            for row in rows
        ]

    async def fetch_qualities(
        self,
        instruments: list[InstrumentId],
        timeframes: list[str],
        start_ns: int,
        end_ns: int,
    ) -> list[Quality]:
        """Quality assessments made in [start_ns, end_ns], filtered like a subscription."""
        venues, symbols = _instrument_arrays(instruments)
        rows = await self._pool.fetch(
            f"SELECT {', '.join(QUALITY_COLUMNS)} FROM data_quality_metrics "
            "WHERE time >= $1 AND time <= $2 "
            f"AND {_WANTED_INSTRUMENT.format(alias='', venues='$3', symbols='$4')} "
            "AND (cardinality($5::text[]) = 0 OR timeframe = ANY($5::text[]))",
            ns_to_datetime(start_ns),
            ns_to_datetime(end_ns),
            venues,
            symbols,
            timeframes,
        )
        return [quality_from_record(row) for row in rows]
