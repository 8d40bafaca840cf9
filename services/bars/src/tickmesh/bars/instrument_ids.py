"""The integer id each instrument has in `instruments`, which keys `candles` and `bar_versions`.

An id is assigned the first time a bar of the instrument is stored (see
0011_candle_instrument_ids.sql) and never changes, so one lookup per instrument and process
is enough: after it, a row's id is a dict hit.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.core.db.pool import Connection
from tickmesh.core.exchanges import exchange_label

# DO UPDATE rather than DO NOTHING: every instrument asked for comes back, also one that
# another bar service shard added after this statement's snapshot was taken.
_ASSIGN = (
    "INSERT INTO instruments (exchange, symbol) "
    "SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2 "
    "ON CONFLICT (exchange, symbol) DO UPDATE SET symbol = EXCLUDED.symbol "
    "RETURNING id, exchange, symbol"
)


class InstrumentIds:
    """Each instrument's id (by proto exchange value and symbol), cached once assigned.

    One object per database: ids differ from one database to another.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str], int] = {}

    async def of(self, conn: Connection | asyncpg.Pool, updates: Sequence[BarUpdate]) -> list[int]:
        """The id of each update's instrument, in order; unknown ones assigned first.

        Call it outside a transaction that may roll back: an id assigned inside it would be
        cached, yet its row gone.
        """
        ids = self._ids
        try:
            return [ids[(u.exchange, u.symbol)] for u in updates]
        except KeyError:
            await self._assign(conn, {(u.exchange, u.symbol) for u in updates} - ids.keys())
            return [ids[(u.exchange, u.symbol)] for u in updates]

    async def _assign(self, conn: Connection | asyncpg.Pool, missing: set[tuple[int, str]]) -> None:
        keys = sorted((exchange_label(exchange), symbol) for exchange, symbol in missing)
        rows = await conn.fetch(_ASSIGN, [k[0] for k in keys], [k[1] for k in keys])
        by_label = {(exchange_label(e), s): (e, s) for e, s in missing}
        for row in rows:
            self._ids[by_label[(row["exchange"], row["symbol"])]] = row["id"]
