"""Analytics history: versions of every stored row and the log of the encoded live updates.

Written in the group commit's transaction (see store.AnalyticsStore.commit) by COPY straight
into append-only tables: version ids and log positions come from the tables' identity
defaults, so nothing is read back. Every update is stamped with one commit time per batch and
serialized once; the same bytes go to live subscribers and into the log Replay sends from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tickmesh.analytics.engine import AnalyticsUpdate
from tickmesh.analytics.results import INDICATOR_NAMES
from tickmesh.analytics.rows import ns_to_datetime, timeframe_label
from tickmesh.core.db.bulk import copy_rows
from tickmesh.core.db.pool import Connection
from tickmesh.core.instruments import InstrumentId

_NS_PER_US = 1000

# The live tables' row shapes (rows.py) with the version's own columns after them.
INDICATOR_VERSION_COLUMNS: tuple[str, ...] = (
    "time",
    "exchange",
    "symbol",
    "timeframe",
    *INDICATOR_NAMES,
    "bar_revision",
    "committed_at",
)
FEATURE_VERSION_COLUMNS: tuple[str, ...] = (
    "time",
    "exchange",
    "symbol",
    "timeframe",
    "feature_version",
    "features",
    "bar_revision",
    "committed_at",
)
QUALITY_VERSION_COLUMNS: tuple[str, ...] = (
    "time",
    "exchange",
    "symbol",
    "timeframe",
    "quality_score",
    "checks_passed",
    "checks_failed",
    "passed_checks",
    "failed_checks",
    "anomalies",
    "received_at",
    "committed_at",
)
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
class HistoryRows:
    """One commit's live-table rows (rows.py shapes) and its encoded updates, to version and log."""

    indicators: Sequence[tuple[object, ...]]
    features: Sequence[tuple[object, ...]]
    qualities: Sequence[tuple[object, ...]]
    revisions: Sequence[int]
    updates: Sequence[EncodedUpdate]
    committed_at_ns: int


async def write_history(conn: Connection, rows: HistoryRows) -> None:
    """Append the commit's versions and log entries (inside the caller's transaction)."""
    committed_at = ns_to_datetime(rows.committed_at_ns)
    if rows.indicators:
        await copy_rows(
            conn,
            "indicator_versions",
            _versioned(rows.indicators, rows.revisions, committed_at),
            INDICATOR_VERSION_COLUMNS,
        )
    if rows.features:
        await copy_rows(
            conn,
            "feature_versions",
            _versioned(rows.features, rows.revisions, committed_at),
            FEATURE_VERSION_COLUMNS,
        )
    if rows.qualities:
        await copy_rows(
            conn,
            "quality_versions",
            [(*row, committed_at) for row in rows.qualities],
            QUALITY_VERSION_COLUMNS,
        )
    if rows.updates:
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
