"""Feature values packed beside their JSON (migration 0012): rows stored before are packed by
the migration, rows written without packed values get them from the JSON, and an export reads
the packed values back as the JSON said."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime, timedelta

import asyncpg
import pyarrow as pa

from tickmesh.core.db.migrations import load_migrations, migrate
from tickmesh.datasets import open_dataset, parse_request

_START = datetime(2026, 3, 1, tzinfo=UTC)
# Early bars lack names (not enough history yet), one value is JSON null, names of several
# lengths (JSONB orders keys by length first), a subnormal and a huge number.
_FEATURES: list[dict[str, float | None]] = [
    {"return_1": 0.25},
    {"return_1": -0.5, "log_volume": None},
    {"return_1": 1e-310, "log_volume": 3.75, "rsi_14_centered": -1e300},
    {"return_1": 7.0, "log_volume": 2.5, "rsi_14_centered": 12.125},
]


async def _insert_features(conn: asyncpg.Connection, symbol: str, table: str) -> None:
    for minute, features in enumerate(_FEATURES):
        version_columns = ", bar_revision, committed_at" if table == "feature_versions" else ""
        version_values = ", 0, now()" if table == "feature_versions" else ""
        await conn.execute(
            f"INSERT INTO {table} (exchange, symbol, timeframe, time, feature_version, "
            f"features{version_columns}) VALUES ('binance_spot', $1, '1m', $2, '1.1.0', "
            f"$3::jsonb{version_values})",
            symbol,
            _START + timedelta(minutes=minute),
            json.dumps(features),
        )


async def _unpacked(conn: asyncpg.Connection, table: str, symbol: str) -> list[dict[str, float]]:
    """Each row's packed values by name, as the layout says, NaN where a value is null."""
    rows = await conn.fetch(
        f"SELECT l.names, t.feature_values FROM {table} t "
        "JOIN feature_layouts l ON l.id = t.feature_layout WHERE t.symbol = $1 ORDER BY t.time",
        symbol,
    )
    unpacked = []
    for row in rows:
        values = struct.unpack(f">{len(row['names'])}d", row["feature_values"])
        unpacked.append(dict(zip(row["names"], values, strict=True)))
    return unpacked


def _same(unpacked: dict[str, float], features: dict[str, float | None]) -> bool:
    if unpacked.keys() != features.keys():
        return False
    for name, value in features.items():
        got = unpacked[name]
        if value is None:
            if not math.isnan(got):
                return False
        elif got != value:
            return False
    return True


async def test_rows_stored_before_0012_are_packed_as_their_json_says(
    fresh_database_url: str,
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version <= 11])
        await _insert_features(conn, "BTCUSDT", "ml_features")
        await _insert_features(conn, "BTCUSDT", "feature_versions")
        assert 12 in await migrate(conn)
        for table in ("ml_features", "feature_versions"):
            unpacked = await _unpacked(conn, table, "BTCUSDT")
            assert len(unpacked) == len(_FEATURES)
            for got, features in zip(unpacked, _FEATURES, strict=True):
                assert _same(got, features), (table, got, features)
        # One layout per distinct name set, shared by both tables.
        assert await conn.fetchval("SELECT count(*) FROM feature_layouts") == 3
    finally:
        await conn.close()


async def test_rows_written_without_packed_values_get_them_from_their_json(
    fresh_database_url: str,
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn)
        await _insert_features(conn, "ETHUSDT", "ml_features")
        await _insert_features(conn, "ETHUSDT", "feature_versions")
        for table in ("ml_features", "feature_versions"):
            unpacked = await _unpacked(conn, table, "ETHUSDT")
            for got, features in zip(unpacked, _FEATURES, strict=True):
                assert _same(got, features), (table, got, features)
        # An update of the JSON alone packs it again; one that brings its packed values keeps them.
        await conn.execute(
            "UPDATE ml_features SET features = '{\"return_1\": 9.5}' WHERE time = $1", _START
        )
        assert (await _unpacked(conn, "ml_features", "ETHUSDT"))[0] == {"return_1": 9.5}
        layout = await conn.fetchval("SELECT tickmesh_feature_layout(ARRAY['return_1'])")
        await conn.execute(
            "UPDATE ml_features SET features = '{\"return_1\": 1.5}', feature_layout = $2, "
            "feature_values = $3 WHERE time = $1",
            _START,
            layout,
            struct.pack(">d", 1.5),
        )
        assert (await _unpacked(conn, "ml_features", "ETHUSDT"))[0] == {"return_1": 1.5}
    finally:
        await conn.close()


async def test_export_reads_packed_values_of_several_layouts_as_the_json_says(
    fresh_database_url: str,
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version <= 11])
        await conn.execute(
            "INSERT INTO instruments (exchange, symbol) VALUES ('binance_spot', 'X')"
        )
        for minute in range(len(_FEATURES)):
            await conn.execute(
                "INSERT INTO candles (instrument_id, timeframe, time, open, high, low, close, "
                "volume, quote_volume, trade_count, vwap, revision) "
                "VALUES (1, '1m', $1, 1, 1, 1, 1, 1, 1, 1, 1, 0)",
                _START + timedelta(minutes=minute),
            )
        await _insert_features(conn, "X", "ml_features")
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=3)
    try:
        request = parse_request(
            ["binance_spot:X"], ["1m"], "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
        )
        # Chunks of two rows (the first of two widths, the second of one layout), and one chunk.
        for chunk_rows in (2, 50):
            async with open_dataset(pool, request, chunk_rows=chunk_rows) as reader:
                table = pa.Table.from_batches(
                    [batch async for batch in reader.batches()], reader.arrow_schema
                )
            for name in ("return_1", "log_volume", "rsi_14_centered"):
                expected = [features.get(name) for features in _FEATURES]
                got = table.column(f"feat_{name}").to_pylist()
                assert [None if v is None else struct.pack(">d", v) for v in got] == [
                    None if v is None else struct.pack(">d", v) for v in expected
                ], name
    finally:
        await pool.close()
