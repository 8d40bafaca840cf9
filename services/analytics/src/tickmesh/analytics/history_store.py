"""Reads of the analytics history: point-in-time rows, the update log Replay pages, retention.

Point in time at T: per bar open time the version with the greatest version_id committed at
or before T; rows not known by T are left out. The version tables' primary keys lead with
(exchange, symbol, timeframe, time, version_id), so one backward index scan serves a range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from prometheus_client import Counter

from tickmesh.analytics.rows import ns_to_datetime
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.replay import LogPage

# Far past any bar, so an open upper bound needs no second query shape.
_END_OF_TIME_NS = 2**62

_KEY = "exchange = $1 AND symbol = $2 AND timeframe = $3"


@dataclass(frozen=True, slots=True)
class VersionQuery:
    """A range read of one instrument and timeframe as known at `as_of_ns`."""

    instrument: InstrumentId
    timeframe: str
    start_ns: int
    end_ns: int
    limit: int
    as_of_ns: int


async def fetch_versions(
    pool: asyncpg.Pool, table: str, columns: str, query: VersionQuery
) -> list[asyncpg.Record]:
    """The latest `limit` rows of the range as known at as_of, oldest first."""
    rows = await pool.fetch(
        f"SELECT DISTINCT ON (time) {columns} FROM {table} WHERE {_KEY} "
        "AND time >= $4 AND time < $5 AND committed_at <= $6 "
        "ORDER BY time DESC, version_id DESC LIMIT $7",
        query.instrument.venue,
        query.instrument.symbol,
        query.timeframe,
        ns_to_datetime(query.start_ns),
        ns_to_datetime(query.end_ns or _END_OF_TIME_NS),
        ns_to_datetime(query.as_of_ns),
        query.limit,
    )
    return list(reversed(rows))


async def quality_as_of(
    pool: asyncpg.Pool, columns: str, instrument: InstrumentId, timeframe: str, as_of_ns: int
) -> asyncpg.Record | None:
    """The newest assessment of an instrument and timeframe committed by as_of, None before."""
    row: asyncpg.Record | None = await pool.fetchrow(
        f"SELECT {columns} FROM quality_versions WHERE {_KEY} AND committed_at <= $4 "
        "ORDER BY time DESC, version_id DESC LIMIT 1",
        instrument.venue,
        instrument.symbol,
        timeframe,
        ns_to_datetime(as_of_ns),
    )
    return row


def _at_or_after(time_ns: int) -> datetime:
    """The first whole microsecond (the stored precision) at or after `time_ns`."""
    return ns_to_datetime(-(-time_ns // 1000) * 1000)


# A selection as two parallel instrument arrays and a timeframe array; empty arrays mean all.
_SELECTED = (
    "(cardinality($V::text[]) = 0 OR (exchange, symbol) IN "
    "(SELECT * FROM unnest($V::text[], $S::text[]))) "
    "AND (cardinality($T::text[]) = 0 OR timeframe = ANY($T::text[]))"
)


class UpdateLogReplay:
    """The analytics update log, filtered to one replay's instruments and timeframes (a ReplayLog)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        instruments: Sequence[InstrumentId],
        timeframes: Sequence[str],
        pages: Counter | None = None,
    ) -> None:
        self._pool = pool
        self._pages = pages
        self._venues = [i.venue for i in instruments]
        self._symbols = [i.symbol for i in instruments]
        self._timeframes = list(timeframes)

    async def page(self, after_position: int, end_ns: int, limit: int) -> LogPage:
        """Up to `limit` logged updates after `after_position` committed before `end_ns`."""
        selected = _SELECTED.replace("$V", "$4").replace("$S", "$5").replace("$T", "$6")
        # The commit time in whole microseconds as an integer: cheaper than a datetime per row.
        rows = await self._pool.fetch(
            "SELECT position, (extract(epoch FROM committed_at) * 1000000)::bigint AS us, "
            "message FROM analytics_update_log WHERE position > $1 AND committed_at < $2 "
            f"AND {selected} ORDER BY position LIMIT $3",
            after_position,
            _at_or_after(end_ns),
            limit,
            self._venues,
            self._symbols,
            self._timeframes,
        )
        if self._pages is not None:
            self._pages.inc()
        return LogPage([r[0] for r in rows], [r[1] * 1000 for r in rows], [r[2] for r in rows])

    async def position_before(self, time_ns: int) -> int:
        """The position after which the updates committed at or after `time_ns` start."""
        first = await self._pool.fetchval(
            "SELECT position FROM analytics_update_log WHERE committed_at >= $1 "
            "ORDER BY committed_at, position LIMIT 1",
            _at_or_after(time_ns),
        )
        if first is not None:
            return int(first) - 1
        last = await self._pool.fetchval("SELECT max(position) FROM analytics_update_log")
        return 0 if last is None else int(last)


# A version is dropped when nothing at or after the horizon can read it: a newer version of
# the same row was committed before the horizon, or its bar opened before the horizon.
_EXPIRED_VERSIONS = (
    "DELETE FROM {table} v WHERE v.committed_at < $1 AND (v.time < $1 OR EXISTS ("
    "SELECT 1 FROM {table} n WHERE n.exchange = v.exchange AND n.symbol = v.symbol "
    "AND n.timeframe = v.timeframe AND n.time = v.time AND n.version_id > v.version_id "
    "AND n.committed_at < $1))"
)
_VERSION_TABLES = ("indicator_versions", "feature_versions", "quality_versions")


async def delete_expired_history(pool: asyncpg.Pool, horizon_ns: int) -> dict[str, int]:
    """Delete history no read at or after `horizon_ns` needs; rows deleted per table."""
    horizon = ns_to_datetime(horizon_ns)
    deleted: dict[str, int] = {}
    for table in _VERSION_TABLES:
        status = await pool.execute(_EXPIRED_VERSIONS.format(table=table), horizon)
        deleted[table] = int(status.rsplit(" ", 1)[-1])
    status = await pool.execute("DELETE FROM analytics_update_log WHERE committed_at < $1", horizon)
    deleted["analytics_update_log"] = int(status.rsplit(" ", 1)[-1])
    return deleted
