"""The analytics service as real processes: bars in through the real bar service, SIGKILL, resume.

`python -m tickmesh.bars` and `python -m tickmesh.analytics` run as subprocesses on the run's
PostgreSQL and Redis; trades go in through IngestService.Publish like a collector's. After a
SIGKILL of analytics mid-stream and a restart, every final bar has exactly one indicators and
one features row, equal to what an uninterrupted computation over the same bars gives. The
same symbol trades on Binance spot and USD-M at once: two instruments, kept apart throughout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import asyncpg
import numpy as np
import pytest
import redis.asyncio as redis
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tickmesh.analytics.bars import bar_from_proto
from tickmesh.analytics.pipeline import InstrumentAnalytics
from tickmesh.core.cache import indicators_key
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import NS_PER_MINUTE, TIMEFRAMES
from tickmesh.v2 import (
    analytics_pb2,
    analytics_service_pb2,
    analytics_service_pb2_grpc,
    bar_service_pb2,
    bar_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    market_pb2,
)

from .service_helpers import unique_instrument, unique_symbol

if TYPE_CHECKING:  # the async stubs exist only in the generated .pyi
    from tickmesh.v2.analytics_service_pb2_grpc import AnalyticsServiceAsyncStub
    from tickmesh.v2.bar_service_pb2_grpc import BarServiceAsyncStub
    from tickmesh.v2.ingest_service_pb2_grpc import IngestServiceAsyncStub

MINUTES = 150
TRADES_PER_MINUTE = 6
# Trades travel as integer mantissas: prices to 0.01, quantities to 0.001.
PRICE_SCALE = 2
QUANTITY_SCALE = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_serving(address: str, within_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + within_seconds
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} not SERVING after {within_seconds}s")
            await asyncio.sleep(0.1)


async def _eventually(check: Callable[[], Awaitable[None]], within_seconds: float = 30.0) -> None:
    """Retry `check` until it stops raising AssertionError; re-raise the last one at the deadline."""
    deadline = time.monotonic() + within_seconds
    while True:
        try:
            await check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


class Process:
    """One service subprocess with its stderr in a file."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, address: str) -> None:
        """Start and wait until its gRPC server is SERVING."""
        with self.log_path.open("ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                env={**os.environ, **self.env},
                stdout=log_file,
                stderr=log_file,
            )
        await _wait_serving(address)

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` and reap it."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            await self.process.wait()


def _trade_batch(
    stream_id: str, sequence: int, instruments: list[InstrumentId], minute: int, start_ns: int
) -> market_pb2.TradeBatch:
    runs = []
    for index, instrument in enumerate(instruments):
        rng = np.random.default_rng(1000 * index + minute)
        offsets = np.sort(rng.integers(0, NS_PER_MINUTE, TRADES_PER_MINUTE))
        drift = 100.0 * (1 + index) * np.exp(0.002 * np.sin(minute / 7.0))
        prices = drift * (1.0 + rng.normal(0.0, 0.001, TRADES_PER_MINUTE))
        times = [int(start_ns + minute * NS_PER_MINUTE + offset) for offset in offsets]
        runs.append(
            market_pb2.SymbolTrades(
                exchange=market_pb2.Exchange.ValueType(instrument.exchange),
                symbol=instrument.symbol,
                trade_ids=[minute * 100 + k for k in range(TRADES_PER_MINUTE)],
                prices=[round(p * 10**PRICE_SCALE) for p in prices],
                quantities=[
                    round(q * 10**QUANTITY_SCALE) for q in rng.uniform(0.1, 2.0, TRADES_PER_MINUTE)
                ],
                price_scale=PRICE_SCALE,
                quantity_scale=QUANTITY_SCALE,
                sides=[market_pb2.AGGRESSOR_SIDE_BUY] * TRADES_PER_MINUTE,
                event_time_ns=times,
                receive_time_ns=times,
            )
        )
    return market_pb2.TradeBatch(stream_id=stream_id, sequence=sequence, trades=runs)


async def _publish(ingest: IngestServiceAsyncStub, batches: list[market_pb2.TradeBatch]) -> None:
    """Publish batches on one stream and wait until the last one is acknowledged."""
    call = ingest.Publish()
    for batch in batches:
        await call.write(ingest_service_pb2.PublishRequest(batch=batch))
    await call.done_writing()
    last = batches[-1].sequence
    async for ack in call:
        if ack.acked_sequence >= last:
            break
    call.cancel()


@pytest.fixture
async def mesh(
    database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Process, Process, str, str]]:
    """A bar service and an analytics service (not yet started) on free ports."""
    bars_address = f"127.0.0.1:{_free_port()}"
    analytics_address = f"127.0.0.1:{_free_port()}"
    common = {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_ENVIRONMENT": "test",
        "TICKMESH_STARTUP_RETRY_SECONDS": "10",
        "TICKMESH_DRAIN_SECONDS": "0.5",
    }
    bars = Process(
        "tickmesh.bars",
        {**common, "TICKMESH_BARS_LISTEN": bars_address, "TICKMESH_BARS_METRICS_PORT": "0"},
        tmp_path / "bars.log",
    )
    analytics = Process(
        "tickmesh.analytics",
        {
            **common,
            "TICKMESH_ANALYTICS_LISTEN": analytics_address,
            "TICKMESH_ANALYTICS_METRICS_PORT": "0",
            "TICKMESH_BARS_ADDRESS": bars_address,
            "TICKMESH_ANALYTICS_CONSUMER_NAME": unique_symbol("it-"),
        },
        tmp_path / "analytics.log",
    )
    await bars.start(bars_address)
    try:
        yield bars, analytics, bars_address, analytics_address
    finally:
        await analytics.kill()
        await bars.kill()


async def _assert_complete_and_exact(
    bar_stub: BarServiceAsyncStub, analytics: AnalyticsServiceAsyncStub, instrument: InstrumentId
) -> None:
    wanted = instrument.to_proto()
    for spec in TIMEFRAMES:
        timeframe = market_pb2.Timeframe.ValueType(spec.proto)
        bars = (
            await bar_stub.GetBars(
                bar_service_pb2.GetBarsRequest(instrument=wanted, timeframe=timeframe, limit=5000)
            )
        ).bars
        assert all(bar.exchange == instrument.exchange for bar in bars)
        rows = (
            await analytics.GetIndicators(
                analytics_service_pb2.GetIndicatorsRequest(
                    instrument=wanted, timeframe=timeframe, limit=5000
                )
            )
        ).rows
        features = (
            await analytics.GetFeatures(
                analytics_service_pb2.GetFeaturesRequest(
                    instrument=wanted, timeframe=timeframe, limit=5000
                )
            )
        ).rows
        opens = [bar.open_time_ns for bar in bars]
        label = f"{instrument} {spec.label}"
        assert [row.open_time_ns for row in rows] == opens, f"{label} indicators"
        assert [row.open_time_ns for row in features] == opens, f"{label} features"
        fresh = InstrumentAnalytics(instrument, spec)
        expected_rows: list[analytics_pb2.Indicators] = []
        expected_features: list[analytics_pb2.Features] = []
        for bar in bars:
            result = fresh.on_bar(bar_from_proto(bar), bar.open_time_ns + spec.duration_ns)
            expected_rows.extend(r.to_proto() for r in result.indicators)
            expected_features.extend(f.to_proto() for f in result.features)
        assert list(rows) == expected_rows, f"{label} indicator values"
        assert list(features) == expected_features, f"{label} feature values"


async def test_analytics_killed_mid_stream_resumes_without_missing_or_duplicate_rows(
    mesh: tuple[Process, Process, str, str], db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    _, analytics, bars_address, analytics_address = mesh
    usdm = unique_instrument("P")
    # The same symbol on spot (other trades, another price level) and a second USD-M symbol.
    instruments = [usdm, InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, usdm.symbol)]
    instruments.append(unique_instrument("Q"))
    start_ns = (time.time_ns() // NS_PER_MINUTE - MINUTES - 2) * NS_PER_MINUTE
    stream_id = unique_symbol("collector-")
    batches = [
        _trade_batch(stream_id, minute + 1, instruments, minute, start_ns)
        for minute in range(MINUTES)
    ]
    bar_channel = open_channel(bars_address)
    analytics_channel = open_channel(analytics_address)
    # grpc is untyped here, so mypy cannot pick the stubs' aio.Channel overloads by itself.
    ingest = cast("IngestServiceAsyncStub", ingest_service_pb2_grpc.IngestServiceStub(bar_channel))
    bar_stub = cast("BarServiceAsyncStub", bar_service_pb2_grpc.BarServiceStub(bar_channel))
    analytics_stub = cast(
        "AnalyticsServiceAsyncStub",
        analytics_service_pb2_grpc.AnalyticsServiceStub(analytics_channel),
    )
    try:
        await analytics.start(analytics_address)
        await _publish(ingest, batches[:60])

        async def first_hour_stored() -> None:
            reply = await analytics_stub.GetIndicators(
                analytics_service_pb2.GetIndicatorsRequest(
                    instrument=usdm.to_proto(), timeframe=market_pb2.TIMEFRAME_1M, limit=5000
                )
            )
            assert len(reply.rows) >= 55

        await _eventually(first_hour_stored)
        await _publish(ingest, batches[60:110])
        await analytics.kill(signal.SIGKILL)  # mid-stream: the last batches are still in flight
        consumer = analytics.env["TICKMESH_ANALYTICS_CONSUMER_NAME"]
        resume_sql = "SELECT last_change_id FROM analytics_consumer_state WHERE consumer = $1"
        resume_at_kill = await db_pool.fetchval(resume_sql, consumer)
        await _publish(ingest, batches[110:])  # while analytics is down
        await analytics.start(analytics_address)

        for instrument in instruments:

            async def complete(instrument: InstrumentId = instrument) -> None:
                await _assert_complete_and_exact(bar_stub, analytics_stub, instrument)

            await _eventually(complete)

        stored = await db_pool.fetchval(resume_sql, consumer)
        assert resume_at_kill is None or stored > resume_at_kill
        assert stored == await db_pool.fetchval("SELECT max(change_id) FROM candles")
        quality = await analytics_stub.GetQuality(
            analytics_service_pb2.GetQualityRequest(
                instrument=usdm.to_proto(), timeframe=market_pb2.TIMEFRAME_1M
            )
        )
        assert 0.0 < quality.quality.score <= 1.0
        latest = await analytics_stub.GetIndicators(
            analytics_service_pb2.GetIndicatorsRequest(
                instrument=usdm.to_proto(), timeframe=market_pb2.TIMEFRAME_1M, limit=1
            )
        )
        cached = await redis_client.hget(indicators_key(usdm, "1m"), "open_time_ns")
        assert cached is not None
        assert int(cached) >= latest.rows[0].open_time_ns - NS_PER_MINUTE
        log_text = analytics.log_path.read_text()
        assert "Traceback" not in log_text
    finally:
        await bar_channel.close()
        await analytics_channel.close()


def _with_faults(batch: market_pb2.TradeBatch, copies: int, swaps: int) -> market_pb2.TradeBatch:
    """The batch with its first `copies` trades sent again and its first `swaps` pairs swapped."""
    (run,) = batch.trades
    order = list(range(len(run.trade_ids)))
    for pair in range(swaps):
        order[2 * pair], order[2 * pair + 1] = 2 * pair + 1, 2 * pair
    order += list(range(copies))
    faulty = market_pb2.SymbolTrades(
        exchange=run.exchange,
        symbol=run.symbol,
        price_scale=run.price_scale,
        quantity_scale=run.quantity_scale,
    )
    for name in ("trade_ids", "prices", "quantities", "sides", "event_time_ns", "receive_time_ns"):
        getattr(faulty, name).extend(getattr(run, name)[i] for i in order)
    return market_pb2.TradeBatch(
        stream_id=batch.stream_id, sequence=batch.sequence, trades=[faulty]
    )


async def test_duplicates_through_the_bar_service_fail_the_quality_duplicates_check(
    mesh: tuple[Process, Process, str, str],
) -> None:
    _, analytics, bars_address, analytics_address = mesh
    instrument = unique_instrument("DUP")
    minutes = 30
    start_ns = (time.time_ns() // NS_PER_MINUTE - minutes - 2) * NS_PER_MINUTE
    stream_id = unique_symbol("collector-")
    batches = [
        _trade_batch(stream_id, minute + 1, [instrument], minute, start_ns)
        for minute in range(minutes)
    ]
    faulty_minute = 20
    batches[faulty_minute] = _with_faults(batches[faulty_minute], copies=3, swaps=2)
    faulty_ns = start_ns + faulty_minute * NS_PER_MINUTE
    bar_channel = open_channel(bars_address)
    analytics_channel = open_channel(analytics_address)
    ingest = cast("IngestServiceAsyncStub", ingest_service_pb2_grpc.IngestServiceStub(bar_channel))
    bar_stub = cast("BarServiceAsyncStub", bar_service_pb2_grpc.BarServiceStub(bar_channel))
    analytics_stub = cast(
        "AnalyticsServiceAsyncStub",
        analytics_service_pb2_grpc.AnalyticsServiceStub(analytics_channel),
    )
    try:
        await analytics.start(analytics_address)
        await _publish(ingest, batches)
        bars = (
            await bar_stub.GetBars(
                bar_service_pb2.GetBarsRequest(
                    instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M, limit=100
                )
            )
        ).bars
        counted = {b.open_time_ns: (b.duplicate_trades, b.out_of_order_trades) for b in bars}
        assert counted[faulty_ns] == (3, 2)
        assert {t: c for t, c in counted.items() if c != (0, 0)} == {faulty_ns: (3, 2)}

        durations = {
            market_pb2.TIMEFRAME_1M: NS_PER_MINUTE,
            market_pb2.TIMEFRAME_5M: 5 * NS_PER_MINUTE,
        }
        for timeframe in durations:

            async def flagged(timeframe: market_pb2.Timeframe.ValueType = timeframe) -> None:
                try:
                    reply = await analytics_stub.GetQuality(
                        analytics_service_pb2.GetQualityRequest(
                            instrument=instrument.to_proto(), timeframe=timeframe
                        )
                    )
                except aio.AioRpcError as error:
                    raise AssertionError(f"no quality yet: {error.code()}") from error
                quality = reply.quality
                assert {"duplicates", "out_of_order"} <= set(quality.checks_failed)
                assert "stale" in quality.checks_passed
                bucket = faulty_ns - faulty_ns % durations[timeframe]
                details = {(a.check, a.time_ns): a.detail for a in quality.anomalies}
                assert details[("duplicates", bucket)].startswith("3 duplicate trade(s)")
                assert details[("out_of_order", bucket)].startswith("2 trade(s)")
                assert quality.score < 1.0

            await _eventually(flagged)
        assert "Traceback" not in analytics.log_path.read_text()
    finally:
        await bar_channel.close()
        await analytics_channel.close()
