"""The analytics service's PostgreSQL adapter: indicators, ml_features, data_quality_metrics, resume point."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from tickmesh.analytics.engine import PendingBatch
from tickmesh.analytics.results import Features, Indicators, Quality
from tickmesh.analytics.rows import (
    FEATURE_COLUMNS,
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
from tickmesh.core.metrics import CoreMetrics

_ROW_KEY = ("time", "symbol", "timeframe")
INDICATORS = UpsertSpec(table="indicators", columns=INDICATOR_COLUMNS, key=_ROW_KEY)
FEATURES = UpsertSpec(table="ml_features", columns=FEATURE_COLUMNS, key=_ROW_KEY)
QUALITY = UpsertSpec(table="data_quality_metrics", columns=QUALITY_COLUMNS, key=_ROW_KEY)
CONSUMER_STATE = UpsertSpec(
    table="analytics_consumer_state",
    columns=("consumer", "last_change_id"),
    key=("consumer",),
    update_expressions={"updated_at": "now()"},
    # A resume point never moves back (e.g. a stale replica committing late).
    only_if="analytics_consumer_state.last_change_id < EXCLUDED.last_change_id",
)

# Far past any bar, so an open upper bound needs no second query shape.
_END_OF_TIME_NS = 2**62


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """Rows of one symbol and timeframe with start <= open time < end, the latest `limit` kept."""

    symbol: str
    timeframe: str
    start_ns: int
    end_ns: int
    limit: int


class AnalyticsStore:
    """Reads and writes the tables the analytics service owns."""

    def __init__(self, pool: asyncpg.Pool, metrics: CoreMetrics, consumer: str) -> None:
        self._pool = pool
        self._metrics = metrics
        self._consumer = consumer

    async def load_resume_point(self) -> int | None:
        """The change id of the last bar whose analytics were stored, None before the first."""
        value = await self._pool.fetchval(
            "SELECT last_change_id FROM analytics_consumer_state WHERE consumer = $1",
            self._consumer,
        )
        return None if value is None else int(value)

    async def commit(self, batch: PendingBatch) -> None:
        """Write a batch's rows and its resume point in one transaction (all or nothing)."""
        started = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            await upsert(conn, INDICATORS, [indicator_row(i) for i in batch.indicators])
            await upsert(conn, FEATURES, [feature_row(f) for f in batch.features])
            await upsert(conn, QUALITY, [quality_row(q) for q in batch.qualities])
            if batch.last_change_id is not None:
                await upsert(conn, CONSUMER_STATE, [(self._consumer, batch.last_change_id)])
        self._metrics.db_write_latency.labels(table="analytics_group_commit").observe(
            time.perf_counter() - started
        )
        self._metrics.db_rows_written.labels(table="indicators").inc(len(batch.indicators))
        self._metrics.db_rows_written.labels(table="ml_features").inc(len(batch.features))
        self._metrics.db_rows_written.labels(table="data_quality_metrics").inc(len(batch.qualities))

    async def fetch_indicators(self, query: RangeQuery) -> list[Indicators]:
        """Indicator rows of the range, oldest first."""
        rows = await self._fetch_range("indicators", ", ".join(INDICATOR_COLUMNS), query)
        return [indicators_from_record(row) for row in rows]

    async def fetch_features(self, query: RangeQuery) -> list[Features]:
        """Feature rows of the range, oldest first."""
        rows = await self._fetch_range("ml_features", ", ".join(FEATURE_COLUMNS), query)
        return [features_from_record(row) for row in rows]

    async def _fetch_range(
        self, table: str, columns: str, query: RangeQuery
    ) -> list[asyncpg.Record]:
        rows = await self._pool.fetch(
            f"SELECT {columns} FROM {table} WHERE symbol = $1 AND timeframe = $2 "
            "AND time >= $3 AND time < $4 ORDER BY time DESC LIMIT $5",
            query.symbol,
            query.timeframe,
            ns_to_datetime(query.start_ns),
            ns_to_datetime(query.end_ns or _END_OF_TIME_NS),
            query.limit,
        )
        return list(reversed(rows))

    async def latest_quality(self, symbol: str, timeframe: str) -> Quality | None:
        """The newest quality assessment of a symbol and timeframe, None before the first."""
        row = await self._pool.fetchrow(
            f"SELECT {', '.join(QUALITY_COLUMNS)} FROM data_quality_metrics "
            "WHERE symbol = $1 AND timeframe = $2 ORDER BY time DESC LIMIT 1",
            symbol,
            timeframe,
        )
        return None if row is None else quality_from_record(row)

    async def fetch_updates_page(
        self,
        after: tuple[int, str, str],
        symbols: list[str],
        timeframes: list[str],
        limit: int,
    ) -> list[tuple[Indicators, Features | None]]:
        """Stored bars after `after` = (open time ns, symbol, timeframe), in that order, with their features.

        Keyset paging: pass the last returned key as the next `after`.
        """
        time_ns, symbol, timeframe = after
        columns = ", ".join(f"i.{c}" for c in INDICATOR_COLUMNS)
        rows = await self._pool.fetch(
            f"SELECT {columns}, f.feature_version, f.features FROM indicators i "
            "LEFT JOIN ml_features f USING (time, symbol, timeframe) "
            "WHERE (i.time, i.symbol, i.timeframe) > ($1, $2, $3) "
            "AND (cardinality($4::text[]) = 0 OR i.symbol = ANY($4::text[])) "
            "AND (cardinality($5::text[]) = 0 OR i.timeframe = ANY($5::text[])) "
            "ORDER BY i.time, i.symbol, i.timeframe LIMIT $6",
            ns_to_datetime(time_ns),
            symbol,
            timeframe,
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
        self, symbols: list[str], timeframes: list[str], start_ns: int, end_ns: int
    ) -> list[Quality]:
        """Quality assessments made in [start_ns, end_ns], filtered like a subscription."""
        rows = await self._pool.fetch(
            f"SELECT {', '.join(QUALITY_COLUMNS)} FROM data_quality_metrics "
            "WHERE time >= $1 AND time <= $2 "
            "AND (cardinality($3::text[]) = 0 OR symbol = ANY($3::text[])) "
            "AND (cardinality($4::text[]) = 0 OR timeframe = ANY($4::text[]))",
            ns_to_datetime(start_ns),
            ns_to_datetime(end_ns),
            symbols,
            timeframes,
        )
        return [quality_from_record(row) for row in rows]
