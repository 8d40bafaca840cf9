"""Bulk upserts: idempotent, last row wins, expressions applied on insert and update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from tickmesh.bars.bar_rows import CANDLE_COLUMNS
from tickmesh.core.db.bulk import UpsertSpec, upsert
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
