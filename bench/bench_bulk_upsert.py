"""Bulk upsert rate of candles into PostgreSQL (goal: at least 150,000 rows/s on 2 cores).

Each round writes 200,000 new candles into an empty table, then 200,000 more as a live
stream writes them (with one row in a hundred revising a stored candle), then revises every
candle of the first pass (the worst case, no goal). The median of three rounds after a
warm-up round is reported.

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


SYMBOLS = [f"SYM{i:03d}" for i in range(200)]
MINUTES = ROWS // len(SYMBOLS)
REVISED_SHARE = 100  # the live-stream pass revises one stored candle in this many


def _rows(revision: int, first_minute: int) -> list[tuple[object, ...]]:
    """ROWS candles: every symbol's MINUTES minutes from `first_minute`, in key order."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
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
        for symbol in SYMBOLS
        for m in range(first_minute, first_minute + MINUTES)
    ]


def _stream() -> list[tuple[object, ...]]:
    """ROWS new candles with 1 in REVISED_SHARE of the stored ones revised, spread through."""
    new = _rows(0, MINUTES)
    revised = _rows(1, 0)[::REVISED_SHARE]
    step = len(new) // len(revised)
    mixed: list[tuple[object, ...]] = []
    for index, row in enumerate(new):
        mixed.append(row)
        if index % step == step - 1 and index // step < len(revised):
            mixed.append(revised[index // step])
    return mixed


async def _rate(conn: asyncpg.Connection, rows: list[tuple[object, ...]]) -> float:
    """Rows/s writing `rows` in batches as the bar service's group commits do."""
    started = time.perf_counter()
    for offset in range(0, len(rows), BATCH):
        # What a group commit runs: change ids, COPY of new bars, upsert of revisions.
        async with conn.transaction():
            await write_candles(conn, rows[offset : offset + BATCH])
    return len(rows) / (time.perf_counter() - started)


async def _round(conn: asyncpg.Connection) -> tuple[float, float, float]:
    """New candles into an empty table; a live stream on top; then every first candle revised."""
    await conn.execute("TRUNCATE candles")
    new = await _rate(conn, _rows(0, 0))
    stream = await _rate(conn, _stream())
    revised = await _rate(conn, _rows(2, 0))
    return new, stream, revised


async def _measure(url: str) -> tuple[float, float, float]:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await _round(conn)  # on a server fresh from initdb the first round runs cold
        rounds = [await _round(conn) for _ in range(ROUNDS)]
        medians = [statistics.median(r[i] for r in rounds) for i in range(3)]
        return medians[0], medians[1], medians[2]
    finally:
        await conn.close()


async def _run(server_url: str) -> tuple[float, float, float]:
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
    """Candles written as the bar service writes them: new, a live stream, all revised."""
    server_url = os.environ.get("TICKMESH_BENCH_DATABASE_URL") or os.environ.get(
        "TICKMESH_TEST_DATABASE_URL"
    )
    if server_url:
        new, stream, revised = asyncio.run(_run(server_url))
    else:
        with (
            tempfile.TemporaryDirectory() as state,
            EmbeddedServers(Path(state)) as servers,
        ):
            new, stream, revised = asyncio.run(_run(servers.start_postgres()))
    sys.stdout.write(
        f"candles bulk upsert ({ROWS:,} rows a pass, batches of {BATCH:,}, median of {ROUNDS} "
        f"rounds): new {new:,.0f} rows/s, live stream with 1 % revisions {stream:,.0f} rows/s, "
        f"every row revised {revised:,.0f} rows/s\n"
    )
    return [
        Figure("candles upsert, new rows", new, "rows/s", ">= 150,000"),
        Figure("candles upsert, stream with 1 % revisions", stream, "rows/s", ">= 150,000"),
        # Every stored row rewritten at once, the worst case; a live stream revises few.
        Figure("candles upsert, every row revised", revised, "rows/s"),
    ]


if __name__ == "__main__":
    main()
