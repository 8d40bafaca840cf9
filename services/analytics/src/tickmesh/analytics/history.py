"""Analytics history: versions of every stored row and the log of the encoded live updates.

Written in the group commit's transaction (see store.AnalyticsStore.commit): each table's rows
are COPYed once into a staging table, from which one round trip appends the versions and
upserts the live table; updates are COPYed into the log. Version ids and log positions come
from the tables' identity defaults, so nothing is read back. Every update is stamped with one commit time per batch and
serialized once; the same bytes go to live subscribers and into the log Replay sends from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tickmesh.analytics.engine import AnalyticsUpdate
from tickmesh.analytics.rows import ns_to_datetime, timeframe_label
from tickmesh.core.db.bulk import UpsertSpec, copy_rows
from tickmesh.core.db.pool import Connection
from tickmesh.core.instruments import InstrumentId

_NS_PER_US = 1000

# The columns a version adds to its live table's row (rows.py shapes), in staged row order.
BAR_VERSION_COLUMNS: tuple[str, ...] = ("bar_revision", "committed_at")
QUALITY_VERSION_COLUMNS: tuple[str, ...] = ("committed_at",)
LOG_COLUMNS: tuple[str, ...] = ("committed_at", "exchange", "symbol", "timeframe", "message")


@dataclass(frozen=True, slots=True)
class EncodedUpdate:
    """One committed live update: what subscribers filter on, and its message bytes as sent."""

    instrument: InstrumentId
    timeframe: int
    open_time_ns: int
    message: bytes


class CommitClock:
    """Commit stamps in whole microseconds (PostgreSQL's precision), never going back."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._last_ns = 0

    def stamp(self) -> int:
        """The next commit time, Unix epoch nanoseconds, a multiple of 1,000."""
        now_ns = self._clock_ns() // _NS_PER_US * _NS_PER_US
        # A wall clock stepped back must not reorder commits: as_of reads rely on the order.
        self._last_ns = max(now_ns, self._last_ns + _NS_PER_US)
        return self._last_ns


def encode_updates(updates: Sequence[AnalyticsUpdate], committed_at_ns: int) -> list[EncodedUpdate]:
    """Serialize each update once, stamped with its commit time."""
    return [
        EncodedUpdate(
            update.instrument,
            update.timeframe,
            update.open_time_ns,
            update.to_proto(committed_at_ns).SerializeToString(),
        )
        for update in updates
    ]


@dataclass(frozen=True, slots=True)
class VersionedTable:
    """A live table and its version table, written together from one staged copy of the rows."""

    live: UpsertSpec
    versions: str
    columns: tuple[str, ...]  # the live columns, then the version's own (staged row order)

    def staging_table(self) -> str:
        """The session's temporary table the rows are copied into once."""
        return f"_stage_{self.versions}"

    def statements(self) -> str:
        """Append every staged row as a version (in row order), then upsert the last row of
        each key into the live table: two statements, sent in one round trip."""
        staging = self.staging_table()
        columns = ", ".join(self.columns)
        key = ", ".join(self.live.key)
        # The staged version_id holds each row's place in the batch (see upsert_versioned).
        latest = (
            f"(SELECT DISTINCT ON ({key}) * FROM {staging} ORDER BY {key}, version_id DESC) AS s"
        )
        return (
            f"INSERT INTO {self.versions} ({columns}) SELECT {columns} FROM {staging} "
            f"ORDER BY version_id; {self.live.statement(latest)}"
        )


def versioned_table(live: UpsertSpec, versions: str, own: tuple[str, ...]) -> VersionedTable:
    """The VersionedTable of `live` whose version table adds the columns `own`."""
    return VersionedTable(live, versions, (*live.columns, *own))


async def upsert_versioned(
    conn: Connection, table: VersionedTable, rows: Sequence[tuple[object, ...]]
) -> None:
    """Write rows (table.columns order) as versions and into the live table, COPYing them once.

    One COPY instead of one per table: the server parses a feature set's JSON and compresses
    it (TOAST) per copy, and that is most of a commit's time. The staging table takes the
    version table's column compression (lz4), since a compressed value is copied on as is.
    """
    if not rows:
        return
    staging = table.staging_table()
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
        f"(LIKE {table.versions} INCLUDING COMPRESSION); TRUNCATE {staging}"
    )
    numbered = [(*row, ordinal) for ordinal, row in enumerate(rows)]
    await copy_rows(conn, staging, numbered, (*table.columns, "version_id"))
    await conn.execute(table.statements())


@dataclass(frozen=True, slots=True)
class HistoryRows:
    """One commit's rows to store, each with its version columns, and its encoded updates."""

    indicators: Sequence[tuple[object, ...]]
    features: Sequence[tuple[object, ...]]
    qualities: Sequence[tuple[object, ...]]
    updates: Sequence[EncodedUpdate]
    committed_at_ns: int


def history_rows(
    indicators: Sequence[tuple[object, ...]],
    features: Sequence[tuple[object, ...]],
    qualities: Sequence[tuple[object, ...]],
    revisions: Sequence[int],
    updates: Sequence[EncodedUpdate],
    committed_at_ns: int,
) -> HistoryRows:
    """Live-table rows (rows.py shapes) with their bar revisions and the commit time added."""
    committed_at = ns_to_datetime(committed_at_ns)
    return HistoryRows(
        _versioned(indicators, revisions, committed_at),
        _versioned(features, revisions, committed_at),
        [(*row, committed_at) for row in qualities],
        updates,
        committed_at_ns,
    )


async def log_updates(conn: Connection, rows: HistoryRows) -> None:
    """Append the commit's encoded updates to the log Replay reads (in the caller's transaction)."""
    if rows.updates:
        committed_at = ns_to_datetime(rows.committed_at_ns)
        await copy_rows(
            conn, "analytics_update_log", _log_rows(rows.updates, committed_at), LOG_COLUMNS
        )


def _versioned(
    rows: Sequence[tuple[object, ...]], revisions: Sequence[int], committed_at: datetime
) -> list[tuple[object, ...]]:
    return [(*row, revision, committed_at) for row, revision in zip(rows, revisions, strict=True)]


def _log_rows(updates: Sequence[EncodedUpdate], committed_at: datetime) -> list[tuple[object, ...]]:
    return [
        (
            committed_at,
            update.instrument.venue,
            update.instrument.symbol,
            timeframe_label(update.timeframe),
            update.message,
        )
        for update in updates
    ]
