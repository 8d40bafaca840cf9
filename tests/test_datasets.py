"""Datasets on real PostgreSQL: exact values, features as columns, chunks, the as-first-final mode."""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickmesh.core.instruments import InstrumentId
from tickmesh.datasets import DatasetRequestError, open_dataset, parse_request
from tickmesh.datasets.parquet import write_parquet
from tickmesh.datasets.reader import DatasetRangeError
from tickmesh.v2 import market_pb2

from .dataset_helpers import (
    FEATURE_NAMES,
    MINUTE,
    START,
    BarRow,
    insert_latest,
    insert_versions,
    synthetic_bar,
)

BARS = 30
REVISED = (7, 19)


@pytest.fixture
def pool(db_pool: asyncpg.Pool) -> asyncpg.Pool:
    """The run's migrated database (history tables of migrations 0008 and 0009 included)."""
    return db_pool


def _instrument() -> InstrumentId:
    return InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, f"D{secrets.token_hex(4).upper()}")


async def _revised_series(pool: asyncpg.Pool, instrument: InstrumentId) -> list[BarRow]:
    """BARS final bars, bars REVISED revised once later; the revised rows returned in place."""
    first = [synthetic_bar(i) for i in range(BARS)]
    revised = [synthetic_bar(i, bump=1) for i in REVISED]
    async with pool.acquire() as conn:
        await insert_latest(conn, instrument, first)
        await insert_versions(conn, instrument, first, 0, START + BARS * MINUTE)
        await insert_latest(conn, instrument, revised, revision=1)
        await insert_versions(conn, instrument, revised, 1, START + (BARS + 5) * MINUTE)
    latest = list(first)
    for row in revised:
        latest[(row.time - START) // MINUTE] = row
    return latest


async def _export(pool: asyncpg.Pool, path: Path, **request: Any) -> pa.Table:
    chunk_rows = request.pop("chunk_rows", 50_000)
    connections = request.pop("connections", 1)
    parsed = parse_request(**request)
    async with open_dataset(pool, parsed, chunk_rows=chunk_rows, connections=connections) as reader:
        written = await write_parquet(reader, path)
        assert written == reader.total_rows
    return pq.read_table(path)


def _expected(instrument: InstrumentId, row: BarRow, revision: int) -> dict[str, Any]:
    expected: dict[str, Any] = {
        "instrument": str(instrument),
        "timeframe": "1m",
        "time": row.time,
        **row.values,
        "trade_count": row.trade_count,
        "vwap": row.vwap,
        "revision": revision,
        "feature_version": "1.1.0",
    }
    expected |= {f"ind_{name}": value for name, value in row.indicators.items()}
    expected |= {f"feat_{name}": row.features.get(name) for name in sorted(FEATURE_NAMES)}
    return expected


async def test_latest_export_reads_back_every_value_exactly(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    instrument = _instrument()
    latest = await _revised_series(pool, instrument)
    table = await _export(
        pool,
        tmp_path / "latest.parquet",
        instruments=[str(instrument)],
        timeframes=["1m"],
        start=START,
        end=START + BARS * MINUTE,
    )
    assert table.schema.field("open").type == pa.decimal128(38, 18)
    assert table.schema.metadata[b"tickmesh.mode"] == b"latest"
    feature_columns = [c for c in table.column_names if c.startswith("feat_")]
    assert feature_columns == [f"feat_{n}" for n in sorted(FEATURE_NAMES)]
    assert table.to_pylist() == [
        _expected(instrument, row, 1 if i in REVISED else 0) for i, row in enumerate(latest)
    ]


async def test_as_of_export_differs_from_latest_exactly_at_revised_rows(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    instrument = _instrument()
    await _revised_series(pool, instrument)
    request = {
        "instruments": [str(instrument)],
        "timeframes": ["1m"],
        "start": START,
        "end": START + BARS * MINUTE,
    }
    latest = (await _export(pool, tmp_path / "l.parquet", **request)).to_pylist()
    first = (await _export(pool, tmp_path / "a.parquet", as_of=True, **request)).to_pylist()
    # Three connections on one exported snapshot read the same rows as one connection.
    parallel = await _export(pool, tmp_path / "p.parquet", as_of=True, connections=3, **request)
    assert parallel.to_pylist() == first
    assert len(first) == len(latest) == BARS
    assert first[0]["committed_at"] == START + BARS * MINUTE
    known = ("committed_at", "indicators_committed_at", "features_committed_at")
    differing = [
        i
        for i, (a, b) in enumerate(zip(first, latest, strict=True))
        if {k: v for k, v in a.items() if k not in known} != b
    ]
    assert differing == list(REVISED)
    for i in range(BARS):
        assert first[i]["revision"] == 0
        assert first[i]["close"] == synthetic_bar(i).values["close"]
        assert first[i]["features_committed_at"] == START + BARS * MINUTE


async def test_as_of_bar_without_revision_0_gives_its_earliest_kept_version(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # A candle stored before migration 0008 has one version, of its revision then.
    instrument = _instrument()
    rows = [synthetic_bar(0), synthetic_bar(1, bump=2)]
    async with pool.acquire() as conn:
        await insert_latest(conn, instrument, rows)
        await insert_versions(conn, instrument, rows[:1], 0, START + MINUTE)
        await insert_versions(conn, instrument, rows[1:], 2, START + 3 * MINUTE)
        await insert_versions(conn, instrument, [synthetic_bar(1, bump=5)], 3, START + 9 * MINUTE)
    table = await _export(
        pool,
        tmp_path / "old.parquet",
        instruments=[str(instrument)],
        timeframes=["1m"],
        start=START,
        end=START + 2 * MINUTE,
        as_of=True,
    )
    assert table.column("revision").to_pylist() == [0, 2]
    assert table.column("close").to_pylist()[1] == rows[1].values["close"]


async def test_small_chunks_give_the_same_rows_in_bounded_batches(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    instruments = [_instrument(), _instrument()]
    for instrument in instruments:
        await _revised_series(pool, instrument)
    request = parse_request(
        [str(i) for i in instruments],
        ["1m", "5m"],
        START,
        START + BARS * MINUTE,
        indicators=False,
        features=False,
    )
    async with open_dataset(pool, request, chunk_rows=7) as reader:
        assert reader.total_rows == 2 * BARS
        sizes = [batch.num_rows async for batch in reader.batches()]
    assert max(sizes) <= 7
    assert sum(sizes) == 2 * BARS
    whole = await _export(
        pool,
        tmp_path / "w.parquet",
        instruments=[str(i) for i in instruments],
        timeframes=["1m"],
        start=START,
        end=START + BARS * MINUTE,
        indicators=False,
        features=False,
    )
    assert whole.column_names[-1] == "revision"
    assert whole.column("instrument").to_pylist() == [
        str(i) for i in instruments for _ in range(BARS)
    ]


async def test_range_without_data_gives_empty_file_with_the_schema(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    table = await _export(
        pool,
        tmp_path / "e.parquet",
        instruments=[str(_instrument())],
        timeframes=["1h"],
        start=START - timedelta(days=400),
        end=START,
        as_of=True,
    )
    assert table.num_rows == 0
    assert "committed_at" in table.column_names


@pytest.mark.parametrize(
    ("instruments", "timeframes", "start", "end", "message"),
    [
        (["BTCUSDT"], ["1m"], "2024-01-01", "2024-01-02", "must be <venue>:<symbol>"),
        (["nasdaq:BTCUSDT"], ["1m"], "2024-01-01", "2024-01-02", "nasdaq"),
        (["binance_usdm:BTCUSDT"], ["2m"], "2024-01-01", "2024-01-02", "unknown timeframe"),
        (["binance_usdm:BTCUSDT"], ["1m"], "2024-01-02", "2024-01-01", "must be before"),
        (["binance_usdm:BTCUSDT"], ["1m"], "yesterday", "2024-01-01", "not an ISO 8601"),
        ([], ["1m"], "2024-01-01", "2024-01-02", "at least one instrument"),
    ],
)
def test_bad_request_refused_naming_the_part(
    instruments: list[str], timeframes: list[str], start: str, end: str, message: str
) -> None:
    with pytest.raises(DatasetRequestError, match=message):
        parse_request(instruments, timeframes, start, end)


def test_exact_decimal_has_room_for_the_mesh_scale() -> None:
    from tickmesh.core.decimals import MAX_SCALE

    assert pa.decimal128(38, 18).scale == MAX_SCALE
    assert Decimal("123456789.123456789012345678").as_tuple().exponent == -MAX_SCALE


async def test_price_beyond_18_decimals_stops_the_export_naming_the_series(
    pool: asyncpg.Pool,
) -> None:
    instrument = _instrument()
    async with pool.acquire() as conn:
        await insert_latest(conn, instrument, [synthetic_bar(0)])
        await conn.execute(
            "UPDATE candles SET close = 0.0000000000000000001 "
            "WHERE instrument_id = (SELECT id FROM instruments WHERE symbol = $1)",
            instrument.symbol,
        )
    request = parse_request([str(instrument)], ["1m"], START, START + MINUTE)
    async with open_dataset(pool, request) as reader:
        with pytest.raises(DatasetRangeError, match=str(instrument)):
            [batch async for batch in reader.batches()]


async def test_bar_without_analytics_rows_gets_nulls_in_both_modes(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    instrument = _instrument()
    await _revised_series(pool, instrument)
    gone = START + 4 * MINUTE
    async with pool.acquire() as conn:
        # Parts are read from their own tables: a bar missing its indicator or feature row
        # (and an analytics row of no bar in the range) must not shift the other rows.
        for table in ("indicators", "indicator_versions"):
            await conn.execute(
                f"DELETE FROM {table} WHERE symbol = $1 AND time = $2", instrument.symbol, gone
            )
        for table in ("ml_features", "feature_versions"):
            await conn.execute(
                f"DELETE FROM {table} WHERE symbol = $1 AND time <= $2", instrument.symbol, gone
            )
        for table in ("candles", "bar_versions"):
            await conn.execute(
                f"DELETE FROM {table} WHERE time = $2 "
                "AND instrument_id = (SELECT id FROM instruments WHERE symbol = $1)",
                instrument.symbol,
                START + 9 * MINUTE,
            )
    request = {
        "instruments": [str(instrument)],
        "timeframes": ["1m"],
        "start": START,
        "end": START + BARS * MINUTE,
        "chunk_rows": 4,
    }
    for as_of in (False, True):
        rows = (
            await _export(pool, tmp_path / f"{as_of}.parquet", as_of=as_of, **request)
        ).to_pylist()
        times = [row["time"] for row in rows]
        assert times == [START + i * MINUTE for i in range(BARS) if i != 9]
        assert [i for i, row in enumerate(rows) if row["ind_rsi"] is None] == [4]
        assert [i for i, row in enumerate(rows) if row["feature_version"] is None] == list(range(5))
        assert all(row["feat_return_1"] is None for row in rows[:5])
        assert rows[5]["feat_return_1"] == synthetic_bar(5).features["return_1"]
        assert rows[9]["ind_rsi"] == synthetic_bar(10).indicators["rsi"]  # bar 10: not revised


async def test_failing_chunk_among_several_in_flight_leaves_the_pool_usable(
    pool: asyncpg.Pool,
) -> None:
    instrument = _instrument()
    await _revised_series(pool, instrument)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE candles SET close = 0.0000000000000000001 WHERE time = $2 "
            "AND instrument_id = (SELECT id FROM instruments WHERE symbol = $1)",
            instrument.symbol,
            START + 20 * MINUTE,
        )
    request = parse_request([str(instrument)], ["1m"], START, START + BARS * MINUTE)
    for _ in range(2):  # the second time on the connections the first one gave back
        async with open_dataset(pool, request, chunk_rows=3, connections=3) as reader:
            with pytest.raises(DatasetRangeError, match=str(instrument)):
                [batch async for batch in reader.batches()]
    assert await pool.fetchval("SELECT 1") == 1
