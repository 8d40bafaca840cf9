"""Benchmark: `tickmesh import --from --to` of one large synthetic day through the real engine.

A spot trades file in Binance's current form (no header, microsecond times) with
TICKMESH_BENCH_BACKFILL_TRADES trades (default 1,000,000) over one UTC day is zipped, served
with its CHECKSUM by a local HTTP server in data.binance.vision's layout, and imported by the
real range import into a `python -m tickmesh.bars` process (embedded PostgreSQL and Redis),
once for a new symbol (the live engine, its clock following the trades) and once for a symbol
that trades now (the day goes to the history lane). Measured: trades/s from the first request
until every trade is acknowledged as durable (download, sha256 check, CSV parse, ingest, bar
building, group commits), and the time the fetch alone takes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

from bench.report import Figure, print_table
from tickmesh.collector.binance_csv import CsvKind
from tickmesh.collector.binance_vision import DailyFile, VisionClient, VisionConfig
from tickmesh.collector.history_import import DayStatus, RangeOptions, RangeRequest, import_range
from tickmesh.collector.importer import import_files

DAY = dt.date(2024, 1, 2)
SYMBOL = "BENCHUSDT"
LIVE_SYMBOL = "LIVEUSDT"


def synthetic_day(trades: int, seed: int = 7) -> str:
    """A day of spot trades as Binance's CSV: a random walk, ids from 1, times spread over the day."""
    rng = random.Random(seed)
    start_us = int(dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.UTC).timestamp()) * 10**6
    step_us = 86_400 * 10**6 // trades
    price = 4_000_000  # cents: 40,000.00
    lines = []
    for index in range(trades):
        price = max(100, price + rng.randint(-3, 3))
        quantity = rng.randint(1, 200_000)  # 0.00001 .. 2.00000
        quote = Decimal(price) * quantity / 10**7
        maker = "true" if rng.random() < 0.5 else "false"
        when = start_us + index * step_us
        lines.append(
            f"{index + 1},{price / 100:.2f},{quantity / 10**5:.5f},{quote},{when},{maker},true"
        )
    return "\n".join(lines) + "\n"


async def _timed_import(
    address: str, symbol: str, base_url: str, state: Path, trades: int
) -> float:
    """Trades/s of one day's range import of `symbol`, checked to be acknowledged in full."""
    options = RangeOptions(state / symbol, base_url, chunk_rows=5000, show_progress=False)
    started = time.perf_counter()
    days = await import_range(RangeRequest("spot", symbol, DAY, DAY), address, options)
    elapsed = time.perf_counter() - started
    result = days[0].file
    if days[0].status is not DayStatus.IMPORTED or result is None:
        raise RuntimeError(f"the backfill of {symbol} failed: {days[0]}")
    if result.acknowledged != trades:
        raise RuntimeError(f"{symbol}: {result.acknowledged} of {trades} trades acknowledged")
    return trades / elapsed


async def backfill_rates(trades: int) -> tuple[float, float, float]:
    """Trades/s of a new symbol's day and of a live symbol's (history lane); fetch ms."""
    from tests.collector.vision_server import publish_day, vision_server
    from tests.mesh_processes import ServiceProcess
    from tickmesh.mesh.embedded import EmbeddedServers

    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as directory,
        EmbeddedServers(Path(directory)) as servers,
    ):
        state = Path(directory)
        root = state / "vision"
        day = synthetic_day(trades)
        for symbol in (SYMBOL, LIVE_SYMBOL):
            publish_day(root, DailyFile("spot", CsvKind.TRADES, symbol, DAY), day)
        process = ServiceProcess(
            "bars",
            {
                "TICKMESH_DATABASE_URL": servers.start_postgres(),
                "TICKMESH_REDIS_URL": servers.start_redis(),
            },
        )
        await process.start()
        try:
            with vision_server(root) as (base_url, _):
                new_rate = await _timed_import(process.address, SYMBOL, base_url, state, trades)
                # LIVE_SYMBOL trades now, so its backfilled day goes to the history lane.
                live = state / f"{LIVE_SYMBOL}-trades-live.csv"
                live.write_text(f"{10**12},100.00,0.1,10.0,{time.time_ns() // 1000},false,true\n")
                await import_files(
                    [live], process.address, state_path=state / "live.json", show_progress=False
                )
                lane_rate = await _timed_import(
                    process.address, LIVE_SYMBOL, base_url, state, trades
                )
                # The fetch alone, from an empty cache.
                config = VisionConfig(state / "fetch-only", base_url)
                async with httpx.AsyncClient() as http:
                    fetch_started = time.perf_counter()
                    await VisionClient(config, http).fetch(
                        DailyFile("spot", CsvKind.TRADES, SYMBOL, DAY)
                    )
                    fetched = time.perf_counter() - fetch_started
            return new_rate, lane_rate, fetched * 1000
        finally:
            await process.kill()


def main() -> list[Figure]:
    """Run the backfill once, print and return the figures."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    trades = int(os.environ.get("TICKMESH_BENCH_BACKFILL_TRADES", "1000000"))
    new_rate, lane_rate, fetched = asyncio.run(backfill_rates(trades))
    figures = [
        Figure(f"backfill of a new symbol's day ({trades:,} trades)", new_rate, "trades/s"),
        Figure("backfill of a live symbol's day (history lane)", lane_rate, "trades/s"),
        Figure("  fetch + sha256 check of that day's zip", fetched, "ms"),
    ]
    print_table(figures)
    return figures


if __name__ == "__main__":
    main()
