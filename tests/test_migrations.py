"""Migrations: idempotent, safe when several processes start at once, all or nothing; v1 and
0010 databases upgrade and serve their bars."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import asyncpg
import pytest
from grpc import aio

from tickmesh.bars import saved_state
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.db.migrations import Migration, MigrationError, load_migrations, migrate
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from .mesh_processes import ServiceProcess

EXPECTED_TABLES = {
    "symbols",
    "candles",
    "indicators",
    "ml_features",
    "data_quality_metrics",
    "users",
    "refresh_tokens",
    "alerts",
    "alert_events",
    "ingest_streams",
    "bar_engine_state",
    "bar_engine_finals",
    "bar_history_state",
    "analytics_consumer_state",
    "quarantined_trades",
    "indicator_versions",
    "feature_versions",
    "quality_versions",
    "analytics_update_log",
    "schema_migrations",
    "bar_versions",
    "bar_history_start",
    "instruments",
    "feature_layouts",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def test_migrate_twice_second_run_applies_nothing(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
        assert first == [m.version for m in load_migrations()]
        assert second == []
        assert await _tables(conn) == EXPECTED_TABLES
    finally:
        await conn.close()


async def test_migrate_concurrently_leaves_one_schema(fresh_database_url: str) -> None:
    conns = [await asyncpg.connect(fresh_database_url) for _ in range(6)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in conns))
        applied = [r for r in results if r]
        assert len(applied) == 1
        rows = await conns[0].fetch("SELECT version FROM schema_migrations")
        assert [row["version"] for row in rows] == [m.version for m in load_migrations()]
        assert await _tables(conns[0]) == EXPECTED_TABLES
    finally:
        for conn in conns:
            await conn.close()


async def test_migrate_failing_step_leaves_schema_unchanged(fresh_database_url: str) -> None:
    good = Migration(1, "good", "CREATE TABLE good_table (id INT);", None)
    bad = Migration(2, "bad", "CREATE TABLE other_table (id INT); SELECT * FROM missing;", None)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await migrate(conn, [good, bad])
        assert await _tables(conn) == set()
    finally:
        await conn.close()


async def test_migrate_edited_migration_is_refused(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [Migration(1, "first", "CREATE TABLE t (id INT);", None)])
        edited = Migration(1, "first", "CREATE TABLE t (id BIGINT);", None)
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, [edited])
    finally:
        await conn.close()


# What main at 6224de1 (tickmesh.v1) stored: float columns holding float sums, tables keyed
# by symbol alone, BTCUSDT registered on USD-M and ETHUSDT never registered.
_V1_ROWS = """
INSERT INTO symbols (symbol, exchange, asset_type) VALUES ('BTCUSDT', 'binance_usdm', 'crypto');
INSERT INTO candles (time, symbol, timeframe, exchange, open, high, low, close, volume,
                     quote_volume, trade_count, vwap, revision)
VALUES ('2024-08-08 23:55:00+00', 'BTCUSDT', '1m', 'binance_usdm', 61700.8, 61763.5, 61683.6,
        61700.8, 203.14300000000014, 12536520.476199998, 3483, 61713.3, 0),
       ('2024-08-08 23:55:00+00', 'ETHUSDT', '1m', 'binance_spot', 2661.5, 2662.1, 2660.2,
        2661.0, 607.1479999999992, 1615887.2145999998, 1200, 2661.4, 1);
INSERT INTO indicators (time, symbol, timeframe, rsi)
VALUES ('2024-08-08 23:55:00+00', 'BTCUSDT', '1m', 55.5),
       ('2024-08-08 23:55:00+00', 'ETHUSDT', '1m', 44.4);
INSERT INTO users (username, password_hash, role) VALUES ('ada', 'x', 'trader');
INSERT INTO alerts (user_id, symbol, condition, threshold, channel)
VALUES (1, 'BTCUSDT', 'price_above', 70000, 'websocket');
"""


async def test_migrate_v1_database_keeps_rows_under_their_venue(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version <= 4])
        await conn.execute(_V1_ROWS)
        await migrate(conn)
        candles = await conn.fetch(
            "SELECT exchange, symbol, volume, quote_volume, taker_buy_volume, revision"
            " FROM candles JOIN instruments ON instruments.id = instrument_id ORDER BY symbol"
        )
        assert [tuple(row) for row in candles] == [
            ("binance_usdm", "BTCUSDT", Decimal("203.143"), Decimal("12536520.4762"), None, 0),
            ("binance_spot", "ETHUSDT", Decimal("607.148"), Decimal("1615887.2146"), None, 1),
        ]
        indicators = await conn.fetch("SELECT exchange, symbol FROM indicators ORDER BY symbol")
        # BTCUSDT's registered venue; ETHUSDT was never registered: the venue of its candles.
        assert [tuple(row) for row in indicators] == [
            ("binance_usdm", "BTCUSDT"),
            ("binance_spot", "ETHUSDT"),
        ]
        assert await conn.fetchval("SELECT exchange FROM alerts") == "binance_usdm"
        # The same symbol on another venue is a second instrument now.
        await conn.execute(
            "INSERT INTO symbols (symbol, exchange, asset_type)"
            " VALUES ('BTCUSDT', 'binance_spot', 'crypto')"
        )
        assert await conn.fetchval("SELECT count(*) FROM symbols WHERE symbol = 'BTCUSDT'") == 2
    finally:
        await conn.close()


async def test_migrated_v1_database_serves_its_bars_exactly(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version <= 4])
        await conn.execute(_V1_ROWS)
    finally:
        await conn.close()
    # The bar service applies 0005 at start, then serves the v1 rows by instrument.
    bars = ServiceProcess(
        "bars", {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    )
    await bars.start()
    try:
        async with aio.insecure_channel(bars.address) as channel:
            stub = bar_service_pb2_grpc.BarServiceStub(channel)
            answers = {}
            for instrument in (
                "binance_usdm:BTCUSDT",
                "binance_spot:ETHUSDT",
                "binance_spot:BTCUSDT",
            ):
                response = await stub.GetBars(
                    bar_service_pb2.GetBarsRequest(
                        instrument=InstrumentId.parse(instrument).to_proto(),
                        timeframe=market_pb2.TIMEFRAME_1M,
                    )
                )
                answers[instrument] = [(bar.volume, bar.quote_volume) for bar in response.bars]
    finally:
        await bars.stop()
    assert answers == {
        "binance_usdm:BTCUSDT": [("203.143", "12536520.4762")],
        "binance_spot:ETHUSDT": [("607.148", "1615887.2146")],
        "binance_spot:BTCUSDT": [],
    }


# What main stored before 0011 (instruments as exchange and symbol columns of candles and
# bar_versions): BTCUSDT on USD-M registered, revised once (two versions); BTCUSDT on spot and
# ETHUSDT never registered; a 5m bar; an instrument with a version only (its candle gone).
_V10_ROWS = """
INSERT INTO symbols (symbol, exchange, asset_type) VALUES ('BTCUSDT', 'binance_usdm', 'crypto');
INSERT INTO candles (exchange, symbol, timeframe, time, open, high, low, close, volume,
                     quote_volume, taker_buy_volume, taker_buy_quote_volume, trade_count, vwap,
                     revision, change_id)
VALUES ('binance_usdm', 'BTCUSDT', '1m', '2024-08-08 23:55:00+00', 61700.8, 61763.5, 61683.6,
        61701.2, 203.143, 12536520.4762, 101.5, 6268260.2381, 3483, 61713.3, 1, 12),
       ('binance_spot', 'BTCUSDT', '1m', '2024-08-08 23:55:00+00', 61690.01, 61750, 61680.5,
        61695.99, 12.5, 771187.5, NULL, NULL, 420, 61695, 0, 11),
       ('binance_spot', 'ETHUSDT', '5m', '2024-08-08 23:55:00+00', 2661.5, 2662.1, 2660.2,
        2661, 607.148, 1615887.2146, 300.5, 799754.3, 1200, 2661.4, 0, 13);
INSERT INTO bar_versions (exchange, symbol, timeframe, time, open, high, low, close, volume,
                          quote_volume, trade_count, vwap, revision, change_id, committed_at)
VALUES ('binance_usdm', 'BTCUSDT', '1m', '2024-08-08 23:55:00+00', 61700.8, 61763.5, 61683.6,
        61700.8, 203.1, 12533000.1, 3480, 61713.1, 0, 10, '2024-08-08 23:56:02+00'),
       ('binance_usdm', 'BTCUSDT', '1m', '2024-08-08 23:55:00+00', 61700.8, 61763.5, 61683.6,
        61701.2, 203.143, 12536520.4762, 3483, 61713.3, 1, 12, '2024-08-08 23:57:00+00'),
       ('binance_spot', 'BTCUSDT', '1m', '2024-08-08 23:55:00+00', 61690.01, 61750, 61680.5,
        61695.99, 12.5, 771187.5, 420, 61695, 0, 11, '2024-08-08 23:56:01+00'),
       ('binance_spot', 'XRPETH', '1m', '2024-08-08 23:50:00+00', 0.00021, 0.00021, 0.00021,
        0.00021, 5, 0.00105, 1, 0.00021, 0, 9, '2024-08-08 23:51:00+00');
SELECT setval('candle_change_seq', 13);
"""
_BETWEEN_VERSIONS_NS = 1_723_161_390_000_000_000  # 2024-08-08 23:56:30 UTC


async def test_migrated_0010_database_serves_its_bars_and_their_history(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version <= 10])
        await conn.execute(_V10_ROWS)
        assert await migrate(conn) == [m.version for m in load_migrations() if m.version > 10]
        # Every instrument with a bar or a version has an id; the registry is as it was.
        instruments = await conn.fetch("SELECT exchange, symbol FROM instruments ORDER BY id")
        assert [tuple(row) for row in instruments] == [
            ("binance_spot", "BTCUSDT"),
            ("binance_spot", "ETHUSDT"),
            ("binance_spot", "XRPETH"),
            ("binance_usdm", "BTCUSDT"),
        ]
        assert await conn.fetchval("SELECT count(*) FROM symbols") == 1
        # Change ids and the sequence go on where they were.
        ids = await conn.fetch("SELECT change_id FROM candles ORDER BY change_id")
        assert [row["change_id"] for row in ids] == [11, 12, 13]
        assert await conn.fetchval("SELECT nextval('candle_change_seq')") == 14
    finally:
        await conn.close()
    bars = ServiceProcess(
        "bars", {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    )
    await bars.start()
    try:
        async with aio.insecure_channel(bars.address) as channel:
            stub = bar_service_pb2_grpc.BarServiceStub(channel)

            async def closes(
                instrument: str, timeframe: int, **as_of: int
            ) -> list[tuple[str, int]]:
                response = await stub.GetBars(
                    bar_service_pb2.GetBarsRequest(
                        instrument=InstrumentId.parse(instrument).to_proto(),
                        timeframe=market_pb2.Timeframe.ValueType(timeframe),
                        **as_of,
                    )
                )
                return [(bar.close, bar.revision) for bar in response.bars]

            latest = {
                "binance_usdm:BTCUSDT": await closes(
                    "binance_usdm:BTCUSDT", market_pb2.TIMEFRAME_1M
                ),
                "binance_spot:BTCUSDT": await closes(
                    "binance_spot:BTCUSDT", market_pb2.TIMEFRAME_1M
                ),
                "binance_spot:ETHUSDT": await closes(
                    "binance_spot:ETHUSDT", market_pb2.TIMEFRAME_5M
                ),
                "binance_spot:ETHUSDT 1m": await closes(
                    "binance_spot:ETHUSDT", market_pb2.TIMEFRAME_1M
                ),
            }
            # As known between the two versions of the USD-M bar: its first final.
            past = await closes(
                "binance_usdm:BTCUSDT", market_pb2.TIMEFRAME_1M, as_of_ns=_BETWEEN_VERSIONS_NS
            )
            xrp_past = await closes(
                "binance_spot:XRPETH", market_pb2.TIMEFRAME_1M, as_of_ns=_BETWEEN_VERSIONS_NS
            )
            # A subscriber resuming from change id 0 gets every stored bar, in change-id order.
            call = stub.Subscribe(bar_service_pb2.SubscribeRequest(resume_after_change_id=0))
            resumed = []
            async for response in call:
                bar = response.bar
                resumed.append((bar.exchange, bar.symbol, bar.change_id, bar.taker_buy_volume))
                if len(resumed) == 3:
                    break
            call.cancel()
    finally:
        await bars.stop()
    assert latest == {
        "binance_usdm:BTCUSDT": [("61701.2", 1)],
        "binance_spot:BTCUSDT": [("61695.99", 0)],
        "binance_spot:ETHUSDT": [("2661", 0)],
        "binance_spot:ETHUSDT 1m": [],
    }
    assert past == [("61700.8", 0)]
    assert xrp_past == [("0.00021", 0)]
    assert resumed == [
        (market_pb2.EXCHANGE_BINANCE_SPOT, "BTCUSDT", 11, ""),
        (market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT", 12, "101.5"),
        (market_pb2.EXCHANGE_BINANCE_SPOT, "ETHUSDT", 13, "300.5"),
    ]


async def test_engine_state_saved_as_jsonb_before_0013_restores_the_same_engine(
    fresh_database_url: str,
) -> None:
    engine = BarEngine()
    minute = 60_000_000_000
    engine.apply_trades(
        TradeRun.from_columns(
            1, "XRPETH", [1, 2, 3], [1, 3, 2], [1, 2, 5], [minute + 1, 2 * minute, 3 * minute],
            price_scale=1, quantity_scale=1,
        )
    )  # fmt: skip
    heads, finals = engine.snapshot_changes()
    assert finals
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version <= 12])
        # As the bar service wrote them up to 0012: JSON text into JSONB columns.
        await conn.executemany(
            "INSERT INTO bar_engine_state (exchange, symbol, state) VALUES ($1, $2, $3::jsonb)",
            [("binance_spot", h["symbol"], json.dumps(h)) for h in heads],
        )
        await conn.executemany(
            "INSERT INTO bar_engine_finals (exchange, symbol, timeframe, open_time_ns, bar)"
            " VALUES ($1, $2, $3, $4, $5::jsonb)",
            [("binance_spot", s, label, row[0], json.dumps(row)) for _, s, label, row in finals],
        )
        await migrate(conn)
        state = await conn.fetch("SELECT state FROM bar_engine_state")
        bars = await conn.fetch("SELECT timeframe, bar FROM bar_engine_finals")
    finally:
        await conn.close()
    restored = BarEngine()
    restored.restore(
        [saved_state.decode(row["state"]) for row in state],
        [(1, "XRPETH", row["timeframe"], saved_state.decode(row["bar"])) for row in bars],
    )
    # The engine the same heads and rows restored before 0013, read back with json.loads.
    before = BarEngine()
    before.restore(json.loads(json.dumps(heads)), json.loads(json.dumps(finals)))
    assert len(bars) == len(finals)
    assert restored.snapshot() == before.snapshot()
