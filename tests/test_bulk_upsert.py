"""Bulk upserts: idempotent, last row wins, expressions applied on insert and update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from tickmesh.bars.bar_rows import CANDLE_COLUMNS, CandleRows, candle_rows, streamed_candle_rows
from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.instrument_ids import InstrumentIds
from tickmesh.bars.store import CANDLES as CANDLE_COPY
from tickmesh.bars.store import write_candles
from tickmesh.core.db.bulk import (
    UpsertSpec,
    copy_rows,
    insert_or_upsert,
    next_sequence_values,
    upsert,
)
from tickmesh.core.db.pool import Connection
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.timeframes import TIMEFRAMES
from tickmesh.v2 import market_pb2

CANDLES = UpsertSpec(
    table="candles",
    columns=CANDLE_COLUMNS,
    key=("instrument_id", "timeframe", "time"),
    update_expressions={"change_id": "nextval('candle_change_seq')"},
)

START = datetime(2024, 8, 8, 23, 55, tzinfo=UTC)


async def _instrument(pool: asyncpg.Pool, symbol: str) -> int:
    """The id of binance_usdm:`symbol` in `instruments`, added if new."""
    return int(
        await pool.fetchval(
            "INSERT INTO instruments (exchange, symbol) VALUES ('binance_usdm', $1) "
            "ON CONFLICT (exchange, symbol) DO UPDATE SET symbol = EXCLUDED.symbol RETURNING id",
            symbol,
        )
    )


def _candle(minute: int, instrument_id: int, close: float, revision: int = 0) -> tuple[object, ...]:
    """A candles row; prices and volumes exact Decimals for the numeric columns."""
    price = Decimal(repr(close))
    return (
        instrument_id,
        "1m",
        START + timedelta(minutes=minute),
        Decimal("100"),
        price + 1,
        Decimal("99"),
        price,
        Decimal("2.001"),
        Decimal("2.001") * price,
        3,
        close,
        revision,
        0,  # duplicate trades
        0,  # out-of-order trades
        Decimal("1.5"),  # taker-buy volume
        Decimal("1.5") * price,  # taker-buy quote volume
    )


async def _stored(pool: asyncpg.Pool, symbol: str, columns: str) -> list[asyncpg.Record]:
    """`columns` of binance_usdm:`symbol`'s candles, by open time."""
    return await pool.fetch(
        f"SELECT {columns} FROM candles WHERE instrument_id = (SELECT id FROM instruments "
        "WHERE exchange = 'binance_usdm' AND symbol = $1) ORDER BY time",
        symbol,
    )


async def test_upsert_same_rows_twice_is_idempotent(db_pool: asyncpg.Pool) -> None:
    instrument = await _instrument(db_pool, "IDEMP")
    rows = [_candle(m, instrument, 100.0 + m) for m in range(500)]
    async with db_pool.acquire() as conn:
        assert await upsert(conn, CANDLES, rows) == 500
        assert await upsert(conn, CANDLES, rows) == 500
    closes = await _stored(db_pool, "IDEMP", "close")
    assert [r["close"] for r in closes] == [100.0 + m for m in range(500)]


async def test_numeric_columns_keep_values_exactly(db_pool: asyncpg.Pool) -> None:
    row = _candle(0, await _instrument(db_pool, "EXACT"), 61700.8)
    async with db_pool.acquire() as conn:
        await upsert(conn, CANDLES, [row])
    [stored] = await _stored(
        db_pool, "EXACT", "close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume"
    )
    assert tuple(stored) == (
        Decimal("61700.8"),
        Decimal("2.001"),
        Decimal("123463.3008"),  # never 123463.30080000001
        Decimal("1.5"),
        Decimal("92551.2"),
    )


async def test_upsert_changed_row_overwrites_and_gets_new_change_id(db_pool: asyncpg.Pool) -> None:
    metrics = CoreMetrics()
    instrument = await _instrument(db_pool, "REVISE")
    async with db_pool.acquire() as conn:
        await upsert(conn, CANDLES, [_candle(0, instrument, 10.0)], metrics)
        [before] = await _stored(db_pool, "REVISE", "change_id")
        await upsert(conn, CANDLES, [_candle(0, instrument, 11.0, revision=1)], metrics)
        [after] = await _stored(db_pool, "REVISE", "close, revision, change_id")
    assert (after["close"], after["revision"]) == (11.0, 1)
    assert after["change_id"] > before["change_id"]
    assert metrics.db_rows_written.labels(table="candles")._value.get() == 2


async def test_upsert_duplicate_keys_in_one_batch_last_wins(db_pool: asyncpg.Pool) -> None:
    instrument = await _instrument(db_pool, "DUPKEY")
    rows = [_candle(0, instrument, 1.0), _candle(0, instrument, 2.0), _candle(1, instrument, 3.0)]
    async with db_pool.acquire() as conn:
        assert await upsert(conn, CANDLES, rows) == 2
    closes = await _stored(db_pool, "DUPKEY", "close")
    assert [r["close"] for r in closes] == [2.0, 3.0]


async def test_next_sequence_values_are_fresh_and_distinct(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        assert await next_sequence_values(conn, "candle_change_seq", 0) == []
        first = await next_sequence_values(conn, "candle_change_seq", 1000)
        second = await next_sequence_values(conn, "candle_change_seq", 3)
    assert len(set(first)) == 1000
    assert min(second) > max(first)


def _final_bar(minute: int, symbol: str, close: int, revision: int = 0) -> BarUpdate:
    """A final 1m bar closing at `close` hundredths, with exact volumes and taker buys."""
    open_ns = int(START.timestamp()) * 1_000_000_000 + minute * 60_000_000_000
    return BarUpdate(
        market_pb2.EXCHANGE_BINANCE_USDM, symbol, TIMEFRAMES[0], open_ns,
        close, close, close, close, 2001, 2001 * close, 3, close / 100, True, revision,
        taker_buy_volume=None if minute % 2 else 1500,
        taker_buy_quote_volume=None if minute % 2 else 1500 * close,
        price_scale=2, quantity_scale=3,
    )  # fmt: skip


async def _write(conn: Connection, pool: asyncpg.Pool, bars: list[BarUpdate]) -> CandleRows:
    """write_candles with the bars' instrument ids, assigned on another connection of `pool`
    (outside `conn`'s transaction, as the bar service does)."""
    return await write_candles(conn, bars, await InstrumentIds().of(pool, bars))


async def test_write_candles_returns_the_change_ids_it_stored(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        # Two writes in one transaction: the second must not see the first's staged rows.
        first = (
            await _write(conn, db_pool, [_final_bar(m, "IDS", 1000 + m) for m in range(3)])
        ).change_ids
        second = (await _write(conn, db_pool, [_final_bar(1, "IDS", 2000, revision=1)])).change_ids
        # A restart replaying a final bar writes revision 0 of a row that exists.
        replayed = (
            await _write(conn, db_pool, [_final_bar(2, "IDS", 3000), _final_bar(3, "IDS", 1300)])
        ).change_ids
    stored = await _stored(
        db_pool,
        "IDS",
        "time, close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume, change_id",
    )
    assert [r["close"] for r in stored] == [
        Decimal("10"),
        Decimal("20"),
        Decimal("30"),
        Decimal("13"),
    ]
    # Exact numerics from binary COPY built from mantissas; NULL stays unknown.
    assert [(r["volume"], r["quote_volume"]) for r in stored][1] == (
        Decimal("2.001"), Decimal("40.02")
    )  # fmt: skip
    assert [(r["taker_buy_volume"], r["taker_buy_quote_volume"]) for r in stored] == [
        (Decimal("1.5"), Decimal("15")), (None, None), (Decimal("1.5"), Decimal("45")), (None, None)
    ]  # fmt: skip
    assert [r["change_id"] for r in stored] == [first[0], second[0], *replayed]
    assert min(replayed) > second[0] > max(first)


NUMBERED = UpsertSpec(
    table="candles",
    columns=(*CANDLE_COLUMNS, "change_id"),
    key=("instrument_id", "timeframe", "time"),
)


async def test_insert_or_upsert_copies_new_rows_and_upserts_on_a_conflict(
    db_pool: asyncpg.Pool,
) -> None:
    metrics = CoreMetrics()
    instrument = await _instrument(db_pool, "COPYNEW")
    new = [(*_candle(m, instrument, 1.0 + m), 100 + m) for m in range(3)]
    async with db_pool.acquire() as conn, conn.transaction():
        assert await insert_or_upsert(conn, NUMBERED, new, metrics) == 3
        # An existing key and a key twice in one batch: the COPY is undone, the rows upserted.
        again = [(*_candle(0, instrument, 7.0), 200), (*_candle(3, instrument, 8.0), 201)]
        twice = [(*_candle(4, instrument, 9.0), 202), (*_candle(4, instrument, 9.5), 203)]
        assert await insert_or_upsert(conn, NUMBERED, again, metrics) == 2
        assert await insert_or_upsert(conn, NUMBERED, twice, metrics) == 1
    stored = await _stored(db_pool, "COPYNEW", "close, change_id")
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
            await insert_or_upsert(conn, CANDLES, [_candle(0, 1, 1.0)])


async def test_text_copy_round_trips_every_value_type(db_pool: asyncpg.Pool) -> None:
    rows = [
        ("tab\there, new\nline, back\\slash", Decimal("61700.80"), 2.5, True, START, None),
        ("plain", Decimal("1.2E+3"), float("nan"), False, START + timedelta(hours=1), 7),
    ]
    async with db_pool.acquire() as conn:
        await conn.execute(
            "CREATE TEMP TABLE copy_text (t text, n numeric, f float8, b boolean, "
            "at timestamptz, i bigint)"
        )
        await copy_rows(conn, "copy_text", rows, ("t", "n", "f", "b", "at", "i"), True)
        stored = [tuple(r) for r in await conn.fetch("SELECT * FROM copy_text ORDER BY i")]
        await conn.execute("DROP TABLE copy_text")
    assert stored[0] == (rows[1][0], Decimal("1200"), pytest.approx(float("nan"), nan_ok=True),
                         False, rows[1][4], 7)  # fmt: skip
    assert stored[1] == rows[0]


async def test_candle_rows_with_a_key_twice_keep_the_last(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        await _write(
            conn, db_pool, [_final_bar(0, "TEXTDUP", 1000), _final_bar(0, "TEXTDUP", 1100)]
        )
    stored = await _stored(db_pool, "TEXTDUP", "close")
    assert [r["close"] for r in stored] == [Decimal("11")]


async def test_streamed_candle_rows_fall_back_to_an_upsert_with_every_row(
    db_pool: asyncpg.Pool,
) -> None:
    bars = [_final_bar(m, "STREAMED", 1000 + 100 * m) for m in range(7)]
    ids = await InstrumentIds().of(db_pool, bars)
    async with db_pool.acquire() as conn, conn.transaction():
        await write_candles(conn, bars[5:6], ids[5:6])
        # Chunks of two: the conflicting key is in the third chunk, after two were sent.
        streamed = streamed_candle_rows(bars, list(range(100, 107)), ids, chunk_rows=2)
        assert await insert_or_upsert(conn, CANDLE_COPY, streamed) == 7
        assert streamed.complete().fields == candle_rows(bars, list(range(100, 107)), ids).fields
    stored = await _stored(db_pool, "STREAMED", "close, change_id")
    assert [(r["close"], r["change_id"]) for r in stored] == [
        (Decimal(10 + m), 100 + m) for m in range(7)
    ]


async def test_write_candles_keeps_the_order_of_a_mixed_batch(db_pool: asyncpg.Pool) -> None:
    bars = [_final_bar(m, "MIXED", 1000 + 100 * m) for m in range(4)]
    async with db_pool.acquire() as conn, conn.transaction():
        await _write(conn, db_pool, bars[:2])
        mixed = [bars[2], _final_bar(0, "MIXED", 1500, revision=1), bars[3]]
        rows = await _write(conn, db_pool, mixed)
    # Byte for byte the rows candle_rows builds, in the batch's order (version rows follow it).
    assert rows.fields == candle_rows(mixed, rows.change_ids, rows.instrument_ids).fields
    stored = await _stored(db_pool, "MIXED", "close")
    assert [r["close"] for r in stored] == [Decimal(15), Decimal(11), Decimal(12), Decimal(13)]
