"""Bulk upsert rate of candles into PostgreSQL (goal: at least 150,000 rows/s on 2 cores).

Each round writes 200,000 new candles into an empty table, then 200,000 more as a live
stream writes them (with one row in a hundred revising a stored candle), then revises every
candle of the first pass (the worst case, no goal). The median of three rounds after a
warm-up round is reported. Prices and volumes are exact (numeric columns): the timed work
includes turning the engine's bar updates (integer mantissas) into rows (`write_candles`),
as the bar service's group commit does.

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
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.report import Figure
from tickmesh.bars.bar_history import version_lines, write_versions
from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.instrument_ids import InstrumentIds
from tickmesh.bars.store import write_candles
from tickmesh.core.db.migrations import migrate
from tickmesh.core.timeframes import TIMEFRAMES
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import market_pb2

ROWS = 200_000
ROUNDS = 3
BATCH = 10_000


SYMBOLS = [f"SYM{i:03d}" for i in range(200)]
MINUTES = ROWS // len(SYMBOLS)
REVISED_SHARE = 100  # the live-stream pass revises one stored candle in this many


def _rows(revision: int, first_minute: int) -> list[BarUpdate]:
    """ROWS final 1m bars: every symbol's MINUTES minutes from `first_minute`, in key order.

    Mantissas at BTCUSDT's scales (price 0.01, quantity 0.001): 61,700.25 and 12.525, a quote
    volume of 772,795.63125, taker buys about half of it.
    """
    start_ns = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
    minute = TIMEFRAMES[0]
    return [
        BarUpdate(
            market_pb2.EXCHANGE_SIMULATOR,
            symbol,
            minute,
            start_ns + m * minute.duration_ns,
            6_170_025 + m,
            6_171_050 + m,
            6_169_000 + m,
            6_170_510 + m,
            12_525,
            77_279_563_125 + m,
            42,
            61_700.25 + m,
            True,
            revision,
            taker_buy_volume=6_262,
            taker_buy_quote_volume=38_636_696_550 + m,
            price_scale=2,
            quantity_scale=3,
        )
        for symbol in SYMBOLS
        for m in range(first_minute, first_minute + MINUTES)
    ]


def _stream() -> list[BarUpdate]:
    """ROWS new candles with 1 in REVISED_SHARE of the stored ones revised, spread through."""
    new = _rows(0, MINUTES)
    revised = _rows(1, 0)[::REVISED_SHARE]
    step = len(new) // len(revised)
    mixed: list[BarUpdate] = []
    for index, row in enumerate(new):
        mixed.append(row)
        if index % step == step - 1 and index // step < len(revised):
            mixed.append(revised[index // step])
    return mixed


async def _rate(
    conn: asyncpg.Connection,
    ids: InstrumentIds,
    bars: list[BarUpdate],
    history: bool = False,
) -> float:
    """Rows/s writing `bars` in batches as the bar service's group commits do."""
    started = time.perf_counter()
    for offset in range(0, len(bars), BATCH):
        # What a group commit runs: each bar's instrument id (cached after the first round),
        # rows of exact decimals, change ids, COPY of new bars, upsert of revisions; with
        # history, the version rows of the same bars.
        batch = bars[offset : offset + BATCH]
        instrument_ids = await ids.of(conn, batch)
        async with conn.transaction():
            rows = await write_candles(conn, batch, instrument_ids)
            if history:
                lines, _ = version_lines(rows, time.time_ns() // 1000 * 1000)
                await write_versions(conn, lines)
    return len(bars) / (time.perf_counter() - started)


async def _round(conn: asyncpg.Connection, ids: InstrumentIds) -> tuple[float, float, float, float]:
    """New candles into an empty table; a live stream on top; then every first candle revised;
    then the first two passes again writing history too."""
    await conn.execute("TRUNCATE candles, bar_versions")
    new = await _rate(conn, ids, _rows(0, 0))
    stream = await _rate(conn, ids, _stream())
    revised = await _rate(conn, ids, _rows(2, 0))
    await conn.execute("TRUNCATE candles, bar_versions")
    await _rate(conn, ids, _rows(0, 0), history=True)
    with_history = await _rate(conn, ids, _stream(), history=True)
    return new, stream, revised, with_history


async def _measure(url: str) -> tuple[float, float, float, float]:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        ids = InstrumentIds()
        await _round(conn, ids)  # on a server fresh from initdb the first round runs cold
        rounds = [await _round(conn, ids) for _ in range(ROUNDS)]
        medians = [statistics.median(r[i] for r in rounds) for i in range(4)]
        return medians[0], medians[1], medians[2], medians[3]
    finally:
        await conn.close()


async def _run(server_url: str) -> tuple[float, float, float, float]:
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
        new, stream, revised, with_history = asyncio.run(_run(server_url))
    else:
        with (
            tempfile.TemporaryDirectory() as state,
            EmbeddedServers(Path(state)) as servers,
        ):
            new, stream, revised, with_history = asyncio.run(_run(servers.start_postgres()))
    sys.stdout.write(
        f"candles bulk upsert ({ROWS:,} rows a pass, batches of {BATCH:,}, median of {ROUNDS} "
        f"rounds): new {new:,.0f} rows/s, live stream with 1 % revisions {stream:,.0f} rows/s, "
        f"every row revised {revised:,.0f} rows/s; live stream with bar_versions "
        f"{with_history:,.0f} rows/s\n"
    )
    return [
        Figure("candles upsert, new rows", new, "rows/s", ">= 150,000"),
        Figure("candles upsert, stream with 1 % revisions", stream, "rows/s", ">= 150,000"),
        # Every stored row rewritten at once, the worst case; a live stream revises few.
        Figure("candles upsert, every row revised", revised, "rows/s"),
        # The group commit as it runs now: each candle and its version row, one transaction.
        Figure("candles + bar_versions, stream with 1 % revisions", with_history, "rows/s"),
    ]


if __name__ == "__main__":
    main()
