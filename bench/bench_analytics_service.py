"""Benchmark of the analytics service's path from a final bar to its rows stored, on one core.

Usage (from the repository root): .venv/bin/python -m bench.bench_analytics_service [--symbols 1000] [--minutes 3]

The service's own parts (engine, group committer, PostgreSQL store, Redis cache, hub) run in
one event loop against a real PostgreSQL and Redis (embedded unless TICKMESH_BENCH_DATABASE_URL
/ TICKMESH_TEST_DATABASE_URL and TICKMESH_TEST_REDIS_URL are set). Bars go in exactly as the
consumer hands them over; a bar counts as stored when the transaction holding its indicators,
features, quality and the resume point has committed. Two loads: lone bars (one instrument's
bar final at a time) and minute bursts (every instrument's 1m bar final at the same instant).
Last, the update log those commits wrote is replayed (AnalyticsService.Replay at speed 0 over
gRPC on loopback, one update per response as live Subscribe sends them) for an updates/s figure.
Bars carry exact decimal strings as the bar service sends them (prices to 0.01, volumes to
0.001), so their conversion to floats where bars enter analytics is part of what is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import redis.asyncio as redis

from bench.bench_analytics import random_walks
from bench.report import Figure
from tickmesh.analytics.analytics_cache import AnalyticsCache
from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.analytics_service import AnalyticsServicer, analytics_registration
from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.consumer import YIELD_EVERY_BARS
from tickmesh.analytics.engine import AnalyticsEngine, PendingBatch
from tickmesh.analytics.group_commit import GroupCommitter
from tickmesh.analytics.history import EncodedUpdate
from tickmesh.analytics.hub import AnalyticsHub
from tickmesh.analytics.store import AnalyticsStore
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.grpc_server import GrpcServer
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.runtime import open_context
from tickmesh.core.settings import CommonSettings
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import market_pb2, replay_pb2

WARMUP_BARS = 201
LONE_BARS = 200
REPLAY_ROUNDS = 3


class TimedStore(AnalyticsStore):
    """The real store, noting when the commit holding each change id finished."""

    stored_at: dict[int, int]

    async def commit(self, batch: PendingBatch) -> list[EncodedUpdate]:
        """Commit, then stamp every bar of the batch with the commit's end."""
        published = await super().commit(batch)
        done = time.perf_counter_ns()
        for update in batch.updates:
            self.stored_at[hash((update.instrument, update.open_time_ns))] = done
        return published


def _proto(instrument: InstrumentId, bar: BarInput, change_id: int) -> market_pb2.Bar:
    volume = f"{bar.volume:.3f}"
    return market_pb2.Bar(
        symbol=instrument.symbol,
        exchange=market_pb2.Exchange.ValueType(instrument.exchange),
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=bar.open_time_ns,
        open=f"{bar.open:.2f}",
        high=f"{bar.high:.2f}",
        low=f"{bar.low:.2f}",
        close=f"{bar.close:.2f}",
        volume=volume,
        # Exact as the bar service sums it: a 0.01 price times a 0.001 quantity has 5 decimals.
        quote_volume=f"{float(volume) * bar.close:.5f}",
        taker_buy_volume=f"{bar.taker_buy_volume:.3f}",
        taker_buy_quote_volume=f"{bar.taker_buy_volume * bar.close:.5f}",
        trade_count=bar.trade_count,
        final=True,
        change_id=change_id,
    )


class Harness:
    """The service's parts, fed the way BarConsumer feeds them."""

    def __init__(self, pool: asyncpg.Pool, client: redis.Redis) -> None:
        core = CoreMetrics()
        metrics = AnalyticsMetrics(core.registry)
        self.store = TimedStore(pool, core, f"bench-{secrets.token_hex(4)}")
        self.store.stored_at = {}
        self.engine = AnalyticsEngine()
        # The service's defaults: at most 100 ms between commits, 2,000 bars per group.
        self.committer = GroupCommitter(
            self.store, AnalyticsCache(client), AnalyticsHub(10_000), metrics, 0.1, 2000
        )
        self.compute_ns: list[int] = []
        self._since_yield = 0

    async def hand_in(self, bar: market_pb2.Bar) -> None:
        """What BarConsumer does with one final bar of a warm stream."""
        began = time.perf_counter_ns()
        result = self.engine.process(bar)
        self.committer.batch.add(result, bar)
        self.compute_ns.append(time.perf_counter_ns() - began)
        await self.committer.after_bar()
        self._since_yield += 1
        if self._since_yield >= YIELD_EVERY_BARS:
            self._since_yield = 0
            await asyncio.sleep(0)

    async def until_stored(self, change_id: int) -> None:
        """Wait until the resume point reaches `change_id`."""
        # Polls the committer's public state rather than adding a hook to the service for a bench.
        while (self.committer.stored_change_id or 0) < change_id:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)


def _percentiles(values_ns: Sequence[int]) -> tuple[float, float]:
    values_ms = np.asarray(values_ns, dtype=np.float64) / 1e6
    return float(np.percentile(values_ms, 50)), float(np.percentile(values_ms, 99))


async def _measure(database_url: str, redis_url: str, symbols: int, minutes: int) -> list[Figure]:
    settings = CommonSettings(database_url=database_url, redis_url=redis_url)
    # The service's own start-up path: pool, migrations, Redis.
    async with AsyncExitStack() as stack:
        context = await open_context(settings, CoreMetrics(), stack)
        pool, client = context.pool, context.redis
        harness = Harness(pool, client)
        names = [
            InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, f"BENCH{i:04d}") for i in range(symbols)
        ]
        walks = random_walks(symbols, WARMUP_BARS + LONE_BARS + minutes, seed=11)
        for name, walk in zip(names, walks, strict=True):
            harness.engine.warm((name, market_pb2.TIMEFRAME_1M), walk[:WARMUP_BARS])
        writer = asyncio.create_task(harness.committer.run())
        change_id = 0

        # Lone bars: one instrument's bar becomes final while nothing else is going on.
        lone_ns: list[int] = []
        for index in range(LONE_BARS):
            change_id += 1
            bar = _proto(names[0], walks[0][WARMUP_BARS + index], change_id)
            began = time.perf_counter_ns()
            await harness.hand_in(bar)
            await harness.until_stored(change_id)
            stored_at = harness.store.stored_at[hash((names[0], bar.open_time_ns))]
            lone_ns.append(stored_at - began)
        harness.compute_ns.clear()

        # Minute bursts: every instrument's 1m bar is final at the same instant.
        burst_ns: list[int] = []
        drain_ms: list[float] = []
        started = time.perf_counter()
        for minute in range(minutes):
            t = WARMUP_BARS + LONE_BARS + minute
            bars = []
            for s, name in enumerate(names):
                change_id += 1
                bars.append(_proto(name, walks[s][t], change_id))
            final_at = time.perf_counter_ns()
            for bar in bars:
                await harness.hand_in(bar)
            await harness.until_stored(change_id)
            drain_ms.append((time.perf_counter_ns() - final_at) / 1e6)
            burst_ns.extend(
                harness.store.stored_at[hash((name, bar.open_time_ns))] - final_at
                for name, bar in zip(names, bars, strict=True)
            )
        elapsed = time.perf_counter() - started
        writer.cancel()
        stored_rows = await pool.fetchval(
            "SELECT count(*) FROM indicators WHERE symbol LIKE 'BENCH%'"
        )
        replayed, replay_rate = await _replay_rate(harness.store)

    compute_p50, compute_p99 = _percentiles(harness.compute_ns)
    lone_p50, lone_p99 = _percentiles(lone_ns)
    burst_p50, burst_p99 = _percentiles(burst_ns)
    throughput = symbols * minutes / elapsed
    sys.stdout.write(
        f"symbols={symbols} minutes={minutes} warm-up bars={WARMUP_BARS} rows stored={stored_rows}\n"
        f"per symbol-bar in the service (indicators + features + quality + batching): "
        f"p50={compute_p50:.3f} ms p99={compute_p99:.3f} ms\n"
        f"lone bar final -> indicators + features + quality + resume point committed: "
        f"p50={lone_p50:.2f} ms p99={lone_p99:.2f} ms\n"
        f"minute burst of {symbols} bars final -> stored: p50={burst_p50:.1f} ms "
        f"p99={burst_p99:.1f} ms, all stored after {max(drain_ms):.0f} ms (worst minute)\n"
        f"throughput with storage: {throughput:,.0f} bars/s on one core "
        f"(2,000 symbols x 1 bar/min needs 33 bars/s; a 2,000-bar minute burst drains in "
        f"{2000 / throughput * 1000:,.0f} ms)\n"
        f"replay of the {replayed:,} logged updates from storage over gRPC on loopback at "
        f"speed 0: {replay_rate:,.0f} updates/s (best of {REPLAY_ROUNDS})\n"
    )
    return [
        Figure("analytics service p99 per symbol-bar", compute_p99, "ms", "<= 5 ms"),
        Figure("analytics lone bar final -> stored p99", lone_p99, "ms"),
        Figure("analytics minute burst final -> stored p99", burst_p99, "ms"),
        Figure("analytics service throughput, one core", throughput, "bars/s", ">= 33 bars/s"),
        Figure("analytics replay from storage at speed 0", replay_rate, "updates/s"),
    ]


async def _replay_rate(store: AnalyticsStore) -> tuple[int, float]:
    """Replay the whole update log to one raw-bytes client at speed 0: (updates, best rate)."""
    core = CoreMetrics()
    servicer = AnalyticsServicer(store, AnalyticsHub(10), AnalyticsMetrics(core.registry))
    server = GrpcServer("127.0.0.1:0", [analytics_registration(servicer)], core, drain_seconds=0.1)
    await server.start()
    channel = open_channel(server.address)
    # No response deserializer: the client takes the bytes as a forwarding client would.
    replay = channel.stream_stream(
        "/tickmesh.v2.AnalyticsService/Replay",
        request_serializer=replay_pb2.ReplayRequest.SerializeToString,
    )

    async def start() -> AsyncIterator[replay_pb2.ReplayRequest]:
        yield replay_pb2.ReplayRequest(start=replay_pb2.ReplayStart(speed=0))

    count, best = 0, 0.0
    try:
        for _ in range(REPLAY_ROUNDS):
            began = time.perf_counter()
            count = 0
            async for _message in replay(start()):
                count += 1
            best = max(best, count / (time.perf_counter() - began))
    finally:
        await channel.close()
        await server.stop()
    return count, best


async def _with_database(
    server_url: str, redis_url: str, symbols: int, minutes: int
) -> list[Figure]:
    name = f"tickmesh_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(server_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    try:
        return await _measure(url, redis_url, symbols, minutes)
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: Sequence[str] = ()) -> list[Figure]:
    """Run the benchmark, print latencies and throughput, return them as figures."""
    parser = argparse.ArgumentParser(description="analytics service final bar -> stored benchmark")
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=3)
    args = parser.parse_args(list(argv))
    server_url = os.environ.get("TICKMESH_BENCH_DATABASE_URL") or os.environ.get(
        "TICKMESH_TEST_DATABASE_URL"
    )
    redis_url = os.environ.get("TICKMESH_TEST_REDIS_URL")
    with tempfile.TemporaryDirectory() as state, EmbeddedServers(Path(state)) as servers:
        server_url = server_url or servers.start_postgres()
        redis_url = redis_url or servers.start_redis()
        return asyncio.run(_with_database(server_url, redis_url, args.symbols, args.minutes))


if __name__ == "__main__":
    main(sys.argv[1:])
