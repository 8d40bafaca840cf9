"""Dataset export to Parquet (goal: at least 1,000,000 rows/s): bars only, and bars with
indicators and all features.

A scratch database gets INSTRUMENTS x MINUTES final 1m bars, written with COPY from numpy
text (exact decimals), then every bar's 20 indicators and its feature row (the analytics
catalog's names, as JSONB) derived in SQL. The timed part is what `tickmesh export` does:
open the dataset (count, feature names), read every chunk with `COPY (SELECT ...) TO STDOUT`,
parse it with pyarrow and numpy and write Parquet (snappy). After one untimed round, the best of
ROUNDS is reported with the CPU it took per row, in this process and in the server's backends
(when the server runs on this box): on two cores their sum bounds the rate.

Uses TICKMESH_BENCH_DATABASE_URL or TICKMESH_TEST_DATABASE_URL (a server it may create a
scratch database on), else an embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import psutil

from bench.report import Figure
from tickmesh.analytics.feature_catalog import feature_catalog
from tickmesh.core.db.migrations import migrate
from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.datasets import open_dataset, parse_request
from tickmesh.datasets.parquet import write_parquet
from tickmesh.mesh.embedded import EmbeddedServers

INSTRUMENTS = 4
MINUTES = int(os.environ.get("TICKMESH_BENCH_EXPORT_MINUTES", "50000"))
ROUNDS = 3
START = "2024-01-01T00:00:00Z"
START_EPOCH = 1_704_067_200


def _candles_csv(symbol: str, instrument_id: int) -> bytes:
    """MINUTES bars of a random walk as COPY CSV: prices to 0.01, volumes to 0.001."""
    rng = np.random.default_rng(len(symbol))
    close = np.round(60_000 + np.cumsum(rng.normal(0, 20, MINUTES)), 2)
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) + 5.25
    low = np.minimum(open_, close) - 4.75
    volume = rng.integers(1, 50_000, MINUTES) / 1000
    taker = np.floor(volume * 500) / 1000
    seconds = START_EPOCH + 60 * np.arange(MINUTES)
    times = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    lines = io.StringIO()
    for i in range(MINUTES):
        lines.write(
            f"{instrument_id},1m,{times[i]}+00,{open_[i]:.2f},{high[i]:.2f},{low[i]:.2f},"
            f"{close[i]:.2f},{volume[i]:.3f},{volume[i] * close[i]:.5f},{taker[i]:.3f},"
            f"{taker[i] * close[i]:.5f},{i % 97 + 1},{float(open_[i] + close[i]) / 2!r},0\n"
        )
    return lines.getvalue().encode()


# The candles with their instrument's exchange and symbol (candles hold its id, see 0011).
_CANDLES = "candles JOIN instruments ON instruments.id = instrument_id"


async def _fill(conn: asyncpg.Connection, symbols: list[str]) -> None:
    columns = (
        "instrument_id, timeframe, time, open, high, low, close, volume, quote_volume, "
        "taker_buy_volume, taker_buy_quote_volume, trade_count, vwap, revision"
    )
    for symbol in symbols:
        instrument_id = await conn.fetchval(
            "INSERT INTO instruments (exchange, symbol) VALUES ('binance_usdm', $1) RETURNING id",
            symbol,
        )
        await conn.copy_to_table(
            "candles",
            source=io.BytesIO(_candles_csv(symbol, instrument_id)),
            columns=[c.strip() for c in columns.split(",")],
            format="csv",
        )
    values = ", ".join(f"vwap * {1 + k / 1000}" for k in range(len(INDICATOR_NAMES)))
    await conn.execute(
        f"INSERT INTO indicators (exchange, symbol, timeframe, time, {', '.join(INDICATOR_NAMES)}) "
        f"SELECT exchange, symbol, timeframe, time, {values} FROM {_CANDLES}"
    )
    pairs = ", ".join(
        f"'{spec.name}', (trade_count * {k + 1}) / 7.0" for k, spec in enumerate(feature_catalog())
    )
    # jsonb_build_object takes at most 100 arguments: build the object in halves.
    names = [spec.name for spec in feature_catalog()]
    half = len(names) // 2
    first = ", ".join(pairs.split(", ")[: 2 * half])
    rest = ", ".join(pairs.split(", ")[2 * half :])
    await conn.execute(
        "INSERT INTO ml_features (exchange, symbol, timeframe, time, feature_version, features) "
        f"SELECT exchange, symbol, timeframe, time, '1.1.0', jsonb_build_object({first}) || "
        f"jsonb_build_object({rest}) FROM {_CANDLES}"
    )
    await conn.execute("VACUUM ANALYZE candles, indicators, ml_features")


@dataclass(frozen=True)
class _Rate:
    """The best round's rows per second, and its CPU per row: this process and the server's."""

    rows_per_second: float
    client_us_per_row: float
    server_us_per_row: float | None  # None when the server's processes are not on this box


async def _backend_pids(pool: asyncpg.Pool) -> list[psutil.Process] | None:
    conns = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        pids = [int(await conn.fetchval("SELECT pg_backend_pid()")) for conn in conns]
    finally:
        for conn in conns:
            await pool.release(conn)
    try:
        return [psutil.Process(pid) for pid in pids]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


async def _export_rate(pool: asyncpg.Pool, symbols: list[str], full: bool, out: Path) -> _Rate:
    request = parse_request(
        [f"binance_usdm:{s}" for s in symbols],
        ["1m"],
        START,
        "2030-01-01T00:00:00Z",
        indicators=full,
        features=full,
    )
    backends = await _backend_pids(pool)
    best: _Rate | None = None
    # One round first, untimed: imports, thread pools and the server's caches warm up once
    # per process, not per export.
    for round_ in range(ROUNDS + 1):
        client = psutil.Process().cpu_times()
        server = _cpu_seconds(backends) if backends else 0.0
        started = time.perf_counter()
        async with open_dataset(pool, request, connections=3) as reader:
            rows = await write_parquet(reader, out)
        seconds = time.perf_counter() - started
        client_after = psutil.Process().cpu_times()
        client_seconds = client_after.user + client_after.system - client.user - client.system
        server_seconds = _cpu_seconds(backends) - server if backends else None
        rate = _Rate(
            rows / seconds,
            client_seconds / rows * 1e6,
            None if server_seconds is None else server_seconds / rows * 1e6,
        )
        if round_ and (best is None or rate.rows_per_second > best.rows_per_second):
            best = rate
    assert best is not None
    return best


def _describe(rate: _Rate) -> str:
    server = "?" if rate.server_us_per_row is None else f"{rate.server_us_per_row:.2f}"
    return (
        f"{rate.rows_per_second:,.0f} rows/s (CPU per row: export {rate.client_us_per_row:.2f} us,"
        f" PostgreSQL {server} us)"
    )


async def _measure(url: str) -> tuple[_Rate, _Rate, int]:
    conn = await asyncpg.connect(url)
    symbols = [f"BENCH{i}" for i in range(INSTRUMENTS)]
    try:
        await migrate(conn)
        await _fill(conn, symbols)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
    try:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "export.parquet"
            bars = await _export_rate(pool, symbols, False, out)
            full = await _export_rate(pool, symbols, True, out)
    finally:
        await pool.close()
    return bars, full, INSTRUMENTS * MINUTES


async def _run(server_url: str) -> tuple[_Rate, _Rate, int]:
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
    """Rows per second from PostgreSQL to a Parquet file, bars only and with analytics."""
    server_url = os.environ.get("TICKMESH_BENCH_DATABASE_URL") or os.environ.get(
        "TICKMESH_TEST_DATABASE_URL"
    )
    if server_url:
        bars, full, rows = asyncio.run(_run(server_url))
    else:
        with tempfile.TemporaryDirectory() as state, EmbeddedServers(Path(state)) as servers:
            bars, full, rows = asyncio.run(_run(servers.start_postgres()))
    features = len(feature_catalog())
    sys.stdout.write(
        f"export to Parquet ({rows:,} 1m bars, {INSTRUMENTS} instruments, best of {ROUNDS} after "
        f"one untimed): bars only {_describe(bars)}; bars + {len(INDICATOR_NAMES)} indicators + "
        f"{features} features {_describe(full)}\n"
    )
    return [
        Figure("export to Parquet, bars only", bars.rows_per_second, "rows/s", ">= 1,000,000"),
        Figure(
            "export to Parquet, bars + indicators + features",
            full.rows_per_second,
            "rows/s",
            ">= 1,000,000",
        ),
    ]


if __name__ == "__main__":
    main()
