"""Bulk upserts: idempotent, last row wins, expressions applied on insert and update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tickmesh.bars.bar_rows import CANDLE_COLUMNS
from tickmesh.bars.store import write_candles
from tickmesh.core.db.bulk import UpsertSpec, insert_or_upsert, next_sequence_values, upsert
from tickmesh.core.metrics import CoreMetrics

CANDLES = UpsertSpec(
    table="candles",
    columns=CANDLE_COLUMNS,
    key=("time", "symbol", "timeframe"),
    update_expressions={"change_id": "nextval('candle_change_seq')"},
)

START = datetime(2024, 8, 8, 23, 55, tzinfo=UTC)


def _candle(minute: int, symbol: str, close: float, revision: int = 0) -> tuple[object, ...]:
    return (
        START + timedelta(minutes=minute),
        symbol,
        "1m",
        "binance_usdm",
        100.0,
        close + 1,
        99.0,
        close,
        2.0,
        2.0 * close,
        3,
        close,
        revision,
        0,  # duplicate trades
        0,  # out-of-order trades
    )


async def _count(pool: asyncpg.Pool, symbol: str) -> int:
    value = await pool.fetchval("SELECT count(*) FROM candles WHERE symbol = $1", symbol)
    return int(value)


async def test_upsert_same_rows_twice_is_idempotent(db_pool: asyncpg.Pool) -> None:
    rows = [_candle(m, "IDEMP", 100.0 + m) for m in range(500)]
    async with db_pool.acquire() as conn:
        assert await upsert(conn, CANDLES, rows) == 500
        assert await upsert(conn, CANDLES, rows) == 500
    assert await _count(db_pool, "IDEMP") == 500
    closes = await db_pool.fetch("SELECT close FROM candles WHERE symbol = 'IDEMP' ORDER BY time")
    assert [r["close"] for r in closes] == [100.0 + m for m in range(500)]


async def test_upsert_changed_row_overwrites_and_gets_new_change_id(db_pool: asyncpg.Pool) -> None:
    metrics = CoreMetrics()
    async with db_pool.acquire() as conn:
        await upsert(conn, CANDLES, [_candle(0, "REVISE", 10.0)], metrics)
        before = await conn.fetchrow("SELECT change_id FROM candles WHERE symbol = 'REVISE'")
        await upsert(conn, CANDLES, [_candle(0, "REVISE", 11.0, revision=1)], metrics)
        after = await conn.fetchrow(
            "SELECT close, revision, change_id FROM candles WHERE symbol = 'REVISE'"
        )
    assert before is not None
    assert after is not None
    assert (after["close"], after["revision"]) == (11.0, 1)
    assert after["change_id"] > before["change_id"]
    assert metrics.db_rows_written.labels(table="candles")._value.get() == 2


async def test_upsert_duplicate_keys_in_one_batch_last_wins(db_pool: asyncpg.Pool) -> None:
    rows = [_candle(0, "DUPKEY", 1.0), _candle(0, "DUPKEY", 2.0), _candle(1, "DUPKEY", 3.0)]
    async with db_pool.acquire() as conn:
        assert await upsert(conn, CANDLES, rows) == 2
    closes = await db_pool.fetch("SELECT close FROM candles WHERE symbol = 'DUPKEY' ORDER BY time")
    assert [r["close"] for r in closes] == [2.0, 3.0]


async def test_next_sequence_values_are_fresh_and_distinct(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        assert await next_sequence_values(conn, "candle_change_seq", 0) == []
        first = await next_sequence_values(conn, "candle_change_seq", 1000)
        second = await next_sequence_values(conn, "candle_change_seq", 3)
    assert len(set(first)) == 1000
    assert min(second) > max(first)


async def test_write_candles_returns_the_change_ids_it_stored(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        # Two writes in one transaction: the second must not see the first's staged rows.
        first = await write_candles(conn, [_candle(m, "IDS", 10.0 + m) for m in range(3)])
        second = await write_candles(conn, [_candle(1, "IDS", 20.0, revision=1)])
        # A restart replaying a final bar writes revision 0 of a row that exists.
        replayed = await write_candles(conn, [_candle(2, "IDS", 30.0), _candle(3, "IDS", 13.0)])
    stored = await db_pool.fetch(
        "SELECT time, close, change_id FROM candles WHERE symbol = 'IDS' ORDER BY time"
    )
    assert [r["close"] for r in stored] == [10.0, 20.0, 30.0, 13.0]
    assert [r["change_id"] for r in stored] == [first[0], second[0], *replayed]
    assert min(replayed) > second[0] > max(first)


NUMBERED = UpsertSpec(
    table="candles", columns=(*CANDLE_COLUMNS, "change_id"), key=("symbol", "timeframe", "time")
)


async def test_insert_or_upsert_copies_new_rows_and_upserts_on_a_conflict(
    db_pool: asyncpg.Pool,
) -> None:
    metrics = CoreMetrics()
    new = [(*_candle(m, "COPYNEW", 1.0 + m), 100 + m) for m in range(3)]
    async with db_pool.acquire() as conn, conn.transaction():
        assert await insert_or_upsert(conn, NUMBERED, new, metrics) == 3
        # An existing key and a key twice in one batch: the COPY is undone, the rows upserted.
        again = [(*_candle(0, "COPYNEW", 7.0), 200), (*_candle(3, "COPYNEW", 8.0), 201)]
        twice = [(*_candle(4, "COPYNEW", 9.0), 202), (*_candle(4, "COPYNEW", 9.5), 203)]
        assert await insert_or_upsert(conn, NUMBERED, again, metrics) == 2
        assert await insert_or_upsert(conn, NUMBERED, twice, metrics) == 1
    stored = await db_pool.fetch(
        "SELECT close, change_id FROM candles WHERE symbol = 'COPYNEW' ORDER BY time"
    )
    assert [(r["close"], r["change_id"]) for r in stored] == [
        (7.0, 200),
        (2.0, 101),
        (3.0, 102),
        (8.0, 201),
        (9.5, 203),
    ]
    assert metrics.db_rows_written.labels(table="candles")._value.get() == 6


async def test_insert_or_upsert_refuses_update_expressions(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        with pytest.raises(ValueError, match="update_expressions"):
            await insert_or_upsert(conn, CANDLES, [_candle(0, "NOEXPR", 1.0)])
