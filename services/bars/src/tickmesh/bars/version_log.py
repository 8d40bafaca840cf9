"""`bar_versions` as a replay log: the bars live Subscribe delivered, in change-id order.

BarService.Replay walks it with tickmesh.core.replay.ReplaySession. The position is the
change id; each item is the logged message (the serialized Bar as published), which the
service frames as occurrences of the response field it goes in (`bar` or `bars` of
SubscribeResponse, core.protowire.embedded): the live stream's bytes, never decoded or re-encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import numpy as np
from prometheus_client import Counter

from tickmesh.bars.bar_rows import ns_to_datetime
from tickmesh.core.db.binary_arrays import fixed_width_array
from tickmesh.core.db.copy_binary import PG_EPOCH_US
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.replay import LogPage
from tickmesh.core.sharding import Shard

# Rows copied from candles at migration (message NULL) were never delivered live, so they
# are not part of the log.
_ITEM = "change_id AS p, committed_at AS t, message AS m"
# A page as three arrays in one row: asyncpg decodes arrays in C, where a record a row costs
# the replay as much as the rest of its work. The commit times go as array_send's bytes,
# which numpy reads whole: no datetime an element, and no conversion a row for PostgreSQL
# (the backend is the replay's serial bottleneck). The aggregates take the rows in the order
# the sorted subquery gives them (as PostgreSQL's documentation says it usually does; an
# ORDER BY in each aggregate would sort the page three more times and cost more than the
# query): _read checks that order and refuses a page without it.
_AS_ARRAYS = "SELECT array_agg(p), array_send(array_agg(t)), array_agg(m) "
_SELECTION = (
    "message IS NOT NULL "
    "AND (cardinality($1::text[]) = 0 OR instrument_id IN (SELECT id FROM instruments "
    "WHERE (exchange, symbol) IN (SELECT * FROM unnest($1::text[], $2::text[])))) "
    "AND (cardinality($3::text[]) = 0 OR timeframe = ANY($3::text[]))"
)

_PAGE_WHERE = (
    f"FROM bar_versions WHERE change_id > $4 AND committed_at < $5 AND {_SELECTION} "
    "ORDER BY change_id LIMIT $6"
)
_PAGE = f"SELECT {_ITEM} {_PAGE_WHERE}"
# With the instrument of each row, for a shard to leave out the other shards' rows.
_SHARD_PAGE = (
    "SELECT p, (date_part('epoch', t) * 1000000)::bigint * 1000, m, exchange, symbol "
    f"FROM (SELECT {_ITEM}, instrument_id {_PAGE_WHERE}) AS v "
    "JOIN instruments ON instruments.id = v.instrument_id ORDER BY p"
)


class BarVersionLog:
    """The versions of one replay's selection: instruments and timeframes, this shard only."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        instruments: Sequence[InstrumentId],
        timeframes: Sequence[str],
        shard: Shard,
        history_start_ns: int | None,
        pages: Counter | None = None,
    ) -> None:
        """Empty `instruments` or `timeframes`: all of them (of this shard); `pages` counts
        the pages read."""
        self._pool = pool
        self._pages = pages
        self._filter = (
            [i.venue for i in instruments],
            [i.symbol for i in instruments],
            list(timeframes),
        )
        # Named instruments were checked to be this shard's; "all" must leave out the others'
        # rows, which share the table (and the change-id sequence).
        self._shard = shard if not instruments and shard.count > 1 else None
        self._start_ns = history_start_ns or 0
        self._ahead: tuple[tuple[int, int, int], asyncio.Task[LogPage]] | None = None

    async def page(self, after_position: int, end_ns: int, limit: int) -> LogPage:
        """Up to `limit` versions after change id `after_position` committed before `end_ns`."""
        key = (after_position, end_ns, limit)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            items = await ahead[1]
        else:
            if ahead is not None:  # a seek: the page read ahead is not wanted
                ahead[1].cancel()
            items = await self._read(*key)
        if len(items) == limit:
            # PostgreSQL reads the next page while this one is sent: one page ahead at most,
            # so a stalled reader still holds the replay to two pages.
            following = (items.positions[-1], end_ns, limit)
            self._ahead = (following, asyncio.create_task(self._read(*following)))
        return items

    def abandon(self) -> None:
        """Cancel the page read ahead without waiting (the call is over)."""
        if self._ahead is not None:
            self._ahead[1].cancel()

    async def close(self) -> None:
        """Stop reading ahead (the replay is over)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ahead[1]

    async def _read(self, after_position: int, end_ns: int, limit: int) -> LogPage:
        if self._pages is not None:
            self._pages.inc()
        shard = self._shard
        if shard is None:  # the common case, kept to the fewest steps a row for speed
            page = await self._pool.fetchrow(
                f"{_AS_ARRAYS} FROM ({_PAGE}) AS page",
                *self._filter,
                after_position,
                _at_or_after(end_ns),
                limit,
            )
            if page is None or page[0] is None:
                return LogPage([], [], [])
            positions: list[int] = page[0]
            if positions != sorted(positions):  # cheap on a sorted list; never seen to happen
                raise RuntimeError("bar_versions page out of change-id order")
            # The arrays as asyncpg decoded them: no object a version (see LogPage).
            return LogPage(positions, _unix_ns(page[1]), page[2])
        items = LogPage([], [], [])
        while len(items) < limit:
            wanted = limit - len(items)
            rows = await self._pool.fetch(
                _SHARD_PAGE,
                *self._filter,
                after_position,
                _at_or_after(end_ns),
                wanted,
            )
            for r in rows:
                if shard.owns(InstrumentId.of(r[3], r[4])):
                    items.positions.append(r[0])
                    items.committed_at_ns.append(r[1])
                    items.messages.append(r[2])
            if len(rows) < wanted:
                break
            after_position = rows[-1][0]
        return items

    async def position_before(self, time_ns: int) -> int:
        """The change id after which the versions committed at or after `time_ns` begin."""
        # Before the recorded start of history the log is incomplete: a replay starts there.
        since = _at_or_after(max(time_ns, self._start_ns))
        first: int | None = await self._pool.fetchval(
            f"SELECT min(change_id) FROM bar_versions WHERE committed_at >= $4 AND {_SELECTION}",
            *self._filter,
            since,
        )
        if first is not None:
            return first - 1
        last: int | None = await self._pool.fetchval("SELECT max(change_id) FROM bar_versions")
        return last or 0


def _unix_ns(sent: bytes) -> list[int]:
    """Commit times from array_send of timestamptz (microseconds since 2000-01-01) as Unix
    nanoseconds."""
    micros = fixed_width_array(sent, ">i8").astype(np.int64)
    times: list[int] = ((micros + PG_EPOCH_US) * 1000).tolist()
    return times


def _at_or_after(time_ns: int) -> datetime:
    """The first stored commit time (whole microseconds) not before `time_ns`."""
    return ns_to_datetime(time_ns + 999)
