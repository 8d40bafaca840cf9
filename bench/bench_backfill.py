"""Benchmark: `tickmesh import --from --to` of one large synthetic day through the real engine.

A spot trades file in Binance's current form (no header, microsecond times) with
TICKMESH_BENCH_BACKFILL_TRADES trades (default 1,000,000) over one UTC day is zipped, served
with its CHECKSUM by a local HTTP server in data.binance.vision's layout, and imported by the
real range import into a `python -m tickmesh.bars` process (embedded PostgreSQL and Redis).
Measured: trades/s from the first request until every trade is acknowledged as durable
(download, sha256 check, CSV parse, ingest, bar building, group commits), and the share of
it spent fetching.
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

DAY = dt.date(2024, 1, 2)
SYMBOL = "BENCHUSDT"


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


async def backfill_rate(trades: int) -> tuple[float, float]:
    """(trades/s of the whole import, milliseconds spent fetching and verifying the zip)."""
    from tests.collector.vision_server import publish_day, vision_server
    from tests.mesh_processes import ServiceProcess
    from tickmesh.mesh.embedded import EmbeddedServers

    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        root = Path(state) / "vision"
        publish_day(root, DailyFile("spot", CsvKind.TRADES, SYMBOL, DAY), synthetic_day(trades))
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
                options = RangeOptions(
                    Path(state) / "import", base_url, chunk_rows=5000, show_progress=False
                )
                request = RangeRequest("spot", SYMBOL, DAY, DAY)
                started = time.perf_counter()
                days = await import_range(request, process.address, options)
                elapsed = time.perf_counter() - started
            result = days[0].file
            if days[0].status is not DayStatus.IMPORTED or result is None:
                raise RuntimeError(f"the backfill failed: {days[0]}")
            if result.acknowledged != trades:
                raise RuntimeError(f"{result.acknowledged} of {trades} trades acknowledged")
            # The fetch alone, from a second, empty cache.
            with vision_server(root) as (base_url, _):
                config = VisionConfig(Path(state) / "fetch-only", base_url)
                async with httpx.AsyncClient() as http:
                    fetch_started = time.perf_counter()
                    await VisionClient(config, http).fetch(request.files()[0])
                    fetched = time.perf_counter() - fetch_started
            return trades / elapsed, fetched * 1000
        finally:
            await process.kill()


def main() -> list[Figure]:
    """Run the backfill once, print and return the figures."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    trades = int(os.environ.get("TICKMESH_BENCH_BACKFILL_TRADES", "1000000"))
    rate, fetched = asyncio.run(backfill_rate(trades))
    figures = [
        Figure(f"backfill of one day ({trades:,} trades) to durable bars", rate, "trades/s"),
        Figure("  of which fetch + sha256 check of the zip", fetched, "ms"),
    ]
    print_table(figures)
    return figures


if __name__ == "__main__":
    main()
