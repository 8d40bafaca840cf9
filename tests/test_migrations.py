"""Migrations: idempotent, safe when several processes start at once, all or nothing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tickmesh.core.db.migrations import Migration, MigrationError, load_migrations, migrate

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
    "analytics_consumer_state",
    "quarantined_trades",
    "schema_migrations",
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
