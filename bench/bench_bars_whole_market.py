"""The bar service alone under a whole market: its CPU at 20,000 trades/s over 2,000 instruments.

A real `python -m tickmesh.bars` process (mutual TLS, embedded PostgreSQL and Redis) receives
what the collector sends for a whole market: 2,000 instruments on spot and USD-M, Zipf-skewed
(share of instrument i proportional to 1 / (i + 1) ** 1.1, as the simulator's WholeMarket),
live-timestamped, in one batch every 50 ms grouped into one run per instrument, at
TICKMESH_BENCH_BARS_MARKET_RATE trades/s (default 20,000). After a warm-up that has every
instrument seen, the bar process's CPU time and resident memory are read over
TICKMESH_BENCH_BARS_MARKET_SECONDS (default 120: two minute closes, with their group commits
of 2,000 instruments' finals), while two subscribers read: the final bars of every instrument,
as analytics does, and the forming and final bars of the TICKMESH_BENCH_BARS_MARKET_WATCHED
busiest instruments (default all 2,000), as a gateway does for the instruments its clients
watch. Goal (issue 15): at most 25 % of a core.

The load generator is this process, on the other core; the whole-market bench measures the
mesh end to end with every process on the box.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import psutil

from bench.bench_bars_ingest import (
    ADDRESS,
    dial,
    issue_certificates,
    start_bar_service,
    wait_serving,
)
from bench.report import Figure
from tickmesh.core.tls import TlsMaterial
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    market_pb2,
)

INSTRUMENTS = 2000
SKEW = 1.1
RATE = float(os.environ.get("TICKMESH_BENCH_BARS_MARKET_RATE", "20000"))
SECONDS = float(os.environ.get("TICKMESH_BENCH_BARS_MARKET_SECONDS", "120"))
WATCHED = int(os.environ.get("TICKMESH_BENCH_BARS_MARKET_WATCHED", str(INSTRUMENTS)))
WARM_UP_SECONDS = 20.0
BATCH_SECONDS = 0.05
MB = 1024 * 1024


class _Market:
    """Whole-market batches, made when sent so that their event times are live."""

    def __init__(self, seed: int = 15) -> None:
        self._rng = np.random.default_rng(seed)
        weights = 1.0 / (np.arange(INSTRUMENTS) + 1) ** SKEW
        self._weights = weights / weights.sum()
        self._next_id = np.ones(INSTRUMENTS, dtype=np.int64)
        self._price = np.full(INSTRUMENTS, 100_000, dtype=np.int64)  # 1000.00 at scale 2
        self.sequence = 0
        self.trades = 0

    def batch(self, since_ns: int, until_ns: int) -> ingest_service_pb2.PublishRequest:
        """The trades of (since, until] as one batch, one run per instrument that traded."""
        rng = self._rng
        count = int(rng.poisson(RATE * (until_ns - since_ns) / 1e9))
        instruments = rng.choice(INSTRUMENTS, size=count, p=self._weights)
        times = np.sort(rng.integers(since_ns + 1, until_ns + 1, count))
        order = np.argsort(instruments, kind="stable")  # by instrument, in time order within
        instruments, times = instruments[order], times[order]
        bounds = [*np.flatnonzero(np.diff(instruments, prepend=-1)).tolist(), count]
        runs = []
        for start, end in pairwise(bounds):
            index = int(instruments[start])
            size = end - start
            first_id = int(self._next_id[index])
            self._next_id[index] += size
            steps = rng.integers(-2, 3, size)
            prices = self._price[index] + np.cumsum(steps)
            self._price[index] = prices[-1]
            runs.append(
                market_pb2.SymbolTrades(
                    exchange=(
                        market_pb2.EXCHANGE_BINANCE_SPOT
                        if index % 2 == 0
                        else market_pb2.EXCHANGE_BINANCE_USDM
                    ),
                    symbol=f"W{index}USDT",
                    trade_ids=range(first_id, first_id + size),
                    prices=prices.tolist(),
                    quantities=rng.integers(1, 1000, size).tolist(),
                    sides=rng.integers(1, 3, size).tolist(),
                    price_scale=2,
                    quantity_scale=3,
                    event_time_ns=times[start:end].tolist(),
                )
            )
        self.sequence += 1
        self.trades += count
        return ingest_service_pb2.PublishRequest(
            batch=market_pb2.TradeBatch(
                stream_id="bench-whole-market", sequence=self.sequence, trades=runs
            )
        )


async def _publish(
    stub: ingest_service_pb2_grpc.IngestServiceStub, process: psutil.Process
) -> dict[str, float]:
    market = _Market()
    acked = 0
    lag: list[int] = []  # batches sent but not acknowledged, at each batch
    usage: dict[str, float] = {}

    async def requests() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        since = time.time_ns()
        started = time.monotonic()
        measuring_from = started + WARM_UP_SECONDS
        cpu_before = trades_before = 0.0
        while (now := time.monotonic()) < measuring_from + SECONDS:
            if not cpu_before and now >= measuring_from:
                times = process.cpu_times()
                cpu_before, trades_before = times.user + times.system, market.trades
                usage["rss_start_mb"] = process.memory_info().rss / MB
                usage["started"] = now
            until = time.time_ns()
            yield market.batch(since, until)
            since = until
            if cpu_before:
                lag.append(market.sequence - acked)
            await asyncio.sleep(max(0.0, BATCH_SECONDS - (time.monotonic() - now)))
        times = process.cpu_times()
        elapsed = time.monotonic() - usage["started"]
        usage["cpu_percent"] = 100 * (times.user + times.system - cpu_before) / elapsed
        usage["rate"] = (market.trades - trades_before) / elapsed
        usage["rss_end_mb"] = process.memory_info().rss / MB

    async for response in stub.Publish(requests()):
        acked = response.acked_sequence
        if "rate" in usage and acked >= market.sequence:
            break
    lag.sort()
    usage["lag_p99"] = float(lag[int(0.99 * (len(lag) - 1))]) if lag else float("nan")
    return usage


def _instrument(index: int) -> market_pb2.Instrument:
    return market_pb2.Instrument(
        exchange=(
            market_pb2.EXCHANGE_BINANCE_SPOT if index % 2 == 0 else market_pb2.EXCHANGE_BINANCE_USDM
        ),
        symbol=f"W{index}USDT",
    )


async def _watch(
    stub: bar_service_pb2_grpc.BarServiceStub,
    instruments: int,
    include_forming: bool,
    counts: dict[str, int],
) -> None:
    """Read the bars of the `instruments` busiest instruments: finals, and forming bars if asked
    (analytics reads finals of all, a gateway forming and finals of those watched)."""
    request = bar_service_pb2.SubscribeRequest(
        instruments=[_instrument(i) for i in range(instruments)],
        include_forming=include_forming,
        max_batch=1000,
    )
    async for response in stub.Subscribe(request):
        for bar in response.bars if response.bars else (response.bar,):
            counts["final" if bar.final else "forming"] += 1


async def _run(database_url: str, redis_url: str, tls_root: Path) -> dict[str, float]:
    collector = TlsMaterial.load(tls_root / "collector")
    service = await start_bar_service(database_url, redis_url, tls_root)
    try:
        reader = TlsMaterial.load(tls_root / "reader")
        await wait_serving(ADDRESS, reader)
        async with dial(ADDRESS, collector) as channel, dial(ADDRESS, reader) as viewer:
            counts = {"forming": 0, "final": 0}
            analytics_counts = {"forming": 0, "final": 0}
            bars = bar_service_pb2_grpc.BarServiceStub(viewer)
            watchers = [
                asyncio.create_task(_watch(bars, WATCHED, True, counts)),
                asyncio.create_task(_watch(bars, INSTRUMENTS, False, analytics_counts)),
            ]
            try:
                stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
                usage = await _publish(stub, psutil.Process(service.pid))
            finally:
                for watcher in watchers:
                    watcher.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
            usage.update({f"{kind}_bars": float(count) for kind, count in counts.items()})
            usage["analytics_final_bars"] = float(analytics_counts["final"])
            return usage
    finally:
        service.kill()
        await service.wait()


def main() -> list[Figure]:
    """Measure the bar service's CPU and memory under a steady whole market."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        tls_root = issue_certificates(Path(state))
        usage = asyncio.run(_run(servers.start_postgres(), servers.start_redis(), tls_root))
    sys.stdout.write(
        f"bar service, {INSTRUMENTS:,} instruments at {usage['rate']:,.0f} trades/s for "
        f"{SECONDS:.0f} s: {usage['cpu_percent']:.1f} % of a core, resident "
        f"{usage['rss_start_mb']:.0f} -> {usage['rss_end_mb']:.0f} MB, batches awaiting "
        f"acknowledgement p99 {usage['lag_p99']:.0f}; a subscriber to {WATCHED:,} instruments "
        f"read {usage['forming_bars']:,.0f} forming and {usage['final_bars']:,.0f} final bars, "
        f"one to the finals of all {usage['analytics_final_bars']:,.0f}\n"
    )
    return [
        Figure(
            f"bars CPU, {INSTRUMENTS:,} instruments @{RATE:,.0f} trades/s, {WATCHED:,} watched",
            usage["cpu_percent"],
            "% core",
            "<= 25 %",
        ),
        Figure("bars resident memory at the end", usage["rss_end_mb"], "MB"),
    ]


if __name__ == "__main__":
    main()
