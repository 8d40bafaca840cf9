"""Bulk upsert rate of candles into PostgreSQL (goal: at least 150,000 rows/s on 2 cores).

Uses TICKMESH_BENCH_DATABASE_URL or TICKMESH_TEST_DATABASE_URL (a server it may create a
scratch database on), else an embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.report import Figure
from tickmesh.bars.store import write_candles
from tickmesh.core.db.migrations import migrate
from tickmesh.mesh.embedded import EmbeddedServers

ROWS = 200_000
ROUNDS = 3
BATCH = 10_000


def _rows(revision: int) -> list[tuple[object, ...]]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    symbols = [f"SYM{i:03d}" for i in range(200)]
    per_symbol = ROWS // len(symbols)
    return [
        (
            start + timedelta(minutes=m),
            symbol,
            "1m",
            "simulator",
            100.0 + m,
            101.0 + m,
            99.0 + m,
            100.5 + m,
            12.5,
            1256.25,
            42,
            100.5 + m,
            revision,
            0,  # duplicate trades
            0,  # out-of-order trades
        )
        for symbol in symbols
        for m in range(per_symbol)
    ]


async def _round(conn: asyncpg.Connection) -> tuple[float, float]:
    """Rows/s writing ROWS new candles, then the same candles again as revisions."""
    rates = []
    for revision in (0, 1):
        rows = _rows(revision)
        started = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            # What the bar service's group commit runs: change ids, COPY, INSERT … ON CONFLICT.
            async with conn.transaction():
                await write_candles(conn, rows[offset : offset + BATCH])
        rates.append(len(rows) / (time.perf_counter() - started))
    return rates[0], rates[1]


async def _measure(url: str) -> tuple[float, float]:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        # A round on a server fresh from initdb runs cold (new files, empty caches): warm up.
        # Each round starts from an empty table, as the figures of earlier sessions did.
        rounds = []
        for _ in range(ROUNDS + 1):
            await conn.execute("TRUNCATE candles")
            rounds.append(await _round(conn))
        rounds = rounds[1:]
        return statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)
    finally:
        await conn.close()


async def _run(server_url: str) -> tuple[float, float]:
    name = f"tickmesh_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(server_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    try:
        return await _measure(url)
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main() -> list[Figure]:
    """Insert 200,000 candles in batches of 10,000, then upsert them all again as revisions."""
    server_url = os.environ.get("TICKMESH_BENCH_DATABASE_URL") or os.environ.get(
        "TICKMESH_TEST_DATABASE_URL"
    )
    if server_url:
        inserted, updated = asyncio.run(_run(server_url))
    else:
        with (
            tempfile.TemporaryDirectory() as state,
            EmbeddedServers(Path(state)) as servers,
        ):
            inserted, updated = asyncio.run(_run(servers.start_postgres()))
    sys.stdout.write(
        f"candles bulk upsert ({ROWS:,} rows, batches of {BATCH:,}, median of {ROUNDS} rounds): "
        f"insert {inserted:,.0f} rows/s, update {updated:,.0f} rows/s\n"
    )
    return [
        Figure("candles upsert, new rows", inserted, "rows/s", ">= 150,000"),
        Figure("candles upsert, revisions", updated, "rows/s", ">= 150,000"),
    ]


if __name__ == "__main__":
    main()
