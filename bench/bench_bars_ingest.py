"""The bar service under load: acknowledged ingest rate and trade-to-forming-bar latency.

A real `python -m tickmesh.bars` process on embedded PostgreSQL and Redis receives
6,000,000 live-timestamped trades of 40 symbols in batches of 1000 on one Publish stream,
as fast as acknowledgements allow (goal: at least 300,000 trades/s sustained). Meanwhile a
probe symbol gets one trade every 300 ms on a second stream and a Subscribe client times
each probe until its forming bar arrives (goal: p99 at most 50 ms). Prices and quantities
travel as exact int64 mantissas (scale 2) with aggressor sides, as the collector sends them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.report import Figure
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    market_pb2,
)

TRADES = 6_000_000
SYMBOLS = 40
BATCH = 1000
PROBE = "PROBEUSDT"
PROBE_EVERY_SECONDS = 0.3
ADDRESS = "127.0.0.1:50552"


def _flood_batches(stream: str = "bench-flood") -> list[ingest_service_pb2.PublishRequest]:
    """Random-walk trades of SYMBOLS symbols over the last minutes, one symbol per batch."""
    rng = np.random.default_rng(7 if stream == "bench-flood" else 8)
    start_ns = time.time_ns() - 20 * 60 * 1_000_000_000
    per_symbol = TRADES // SYMBOLS
    requests = []
    for index in range(SYMBOLS):
        # Mantissas at scale 2: 100.00 is 10000.
        prices = np.round(10_000 + np.cumsum(rng.normal(0, 1, per_symbol))).astype(np.int64)
        sides = rng.integers(1, 3, per_symbol)  # AGGRESSOR_SIDE_BUY or _SELL
        times = start_ns + np.arange(per_symbol, dtype=np.int64) * 6_000_000  # 15 minutes
        for offset in range(0, per_symbol, BATCH):
            part = slice(offset, offset + BATCH)
            run = market_pb2.SymbolTrades(
                exchange=market_pb2.EXCHANGE_SIMULATOR,
                symbol=f"{stream[6:10].upper()}{index:02d}USDT",
                trade_ids=range(offset + 1, offset + 1 + BATCH),
                prices=prices[part].tolist(),
                quantities=[1] * BATCH,  # 0.01
                sides=sides[part].tolist(),
                price_scale=2,
                quantity_scale=2,
                event_time_ns=times[part].tolist(),
            )
            requests.append(run)
    order = rng.permutation(len(requests))
    return [
        ingest_service_pb2.PublishRequest(
            batch=market_pb2.TradeBatch(
                stream_id=stream, sequence=sequence + 1, trades=[requests[i]]
            )
        )
        for sequence, i in enumerate(order)
    ]


async def _wait_serving(address: str) -> None:
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("bar service did not start")


async def _flood(stub: ingest_service_pb2_grpc.IngestServiceStub) -> tuple[int, float]:
    requests = _flood_batches()

    async def send() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        for request in requests:
            yield request

    started = time.perf_counter()
    last = requests[-1].batch.sequence
    async for response in stub.Publish(send()):
        if response.acked_sequence >= last:
            break
    return len(requests) * BATCH, time.perf_counter() - started


async def _probe(
    ingest: ingest_service_pb2_grpc.IngestServiceStub,
    bars: bar_service_pb2_grpc.BarServiceStub,
    stop: asyncio.Event,
) -> list[float]:
    sent_at: dict[str, float] = {}  # by the probe's price, as the bar's close string
    latencies: list[float] = []
    probe = market_pb2.Instrument(exchange=market_pb2.EXCHANGE_SIMULATOR, symbol=PROBE)
    stream = bars.Subscribe(
        bar_service_pb2.SubscribeRequest(
            instruments=[probe], timeframes=[market_pb2.TIMEFRAME_1M], include_forming=True
        )
    )

    async def read() -> None:
        async for response in stream:
            sent = sent_at.pop(response.bar.close, None)
            if sent is not None and not response.bar.final:
                latencies.append(time.perf_counter() - sent)

    reader = asyncio.create_task(read())
    queue: asyncio.Queue[ingest_service_pb2.PublishRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        while (request := await queue.get()) is not None:
            yield request

    call = ingest.Publish(requests())
    await asyncio.sleep(0.5)
    sequence = 0
    while not stop.is_set():
        sequence += 1
        price = 1000 + sequence
        sent_at[str(price)] = time.perf_counter()
        await queue.put(
            ingest_service_pb2.PublishRequest(
                batch=market_pb2.TradeBatch(
                    stream_id="bench-probe",
                    sequence=sequence,
                    trades=[
                        market_pb2.SymbolTrades(
                            exchange=market_pb2.EXCHANGE_SIMULATOR,
                            symbol=PROBE,
                            trade_ids=[sequence],
                            prices=[price],
                            quantities=[1],
                            event_time_ns=[time.time_ns()],
                        )
                    ],
                )
            )
        )
        await asyncio.sleep(PROBE_EVERY_SECONDS)
    await asyncio.sleep(0.5)
    await queue.put(None)
    call.cancel()
    stream.cancel()
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    return latencies


async def _collector_client_rate(address: str) -> float:
    """Trades/s acknowledged when the collector's own IngestClient does the publishing."""
    from prometheus_client import CollectorRegistry

    from tickmesh.collector.collector_metrics import CollectorMetrics
    from tickmesh.collector.ingest_client import IngestClient, IngestConfig

    runs = [request.batch.trades[0] for request in _flood_batches(stream="bench-client")]
    client = IngestClient(
        IngestConfig(address, "bench-client", max_buffered_trades=10_000_000),
        CollectorMetrics(CollectorRegistry()),
    )
    runner = asyncio.create_task(client.run())
    await client.wait_connected()
    started = time.perf_counter()
    client.submit(runs)
    async with asyncio.timeout(120):
        await client.flush()
    elapsed = time.perf_counter() - started
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    return sum(len(run.trade_ids) for run in runs) / elapsed


async def _run(database_url: str, redis_url: str) -> tuple[float, list[float], float]:
    environment = {
        **os.environ,
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_BARS_LISTEN": ADDRESS,
        "TICKMESH_BARS_METRICS_PORT": "0",
        "TICKMESH_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickmesh.bars", env=environment
    )
    try:
        await _wait_serving(ADDRESS)
        async with aio.insecure_channel(ADDRESS) as channel:
            ingest = ingest_service_pb2_grpc.IngestServiceStub(channel)
            bars = bar_service_pb2_grpc.BarServiceStub(channel)
            stop = asyncio.Event()
            probing = asyncio.create_task(_probe(ingest, bars, stop))
            trades, elapsed = await _flood(ingest)
            stop.set()
            latencies = await probing
        return trades / elapsed, latencies, await _collector_client_rate(ADDRESS)
    finally:
        process.kill()
        await process.wait()


def main() -> list[Figure]:
    """Measure the acknowledged ingest rate and the forming-bar latency under that load."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        rate, latencies, client_rate = asyncio.run(
            _run(servers.start_postgres(), servers.start_redis())
        )
    ms = sorted(1000 * latency for latency in latencies)
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
    sys.stdout.write(
        f"bar service: {rate:,.0f} trades/s acknowledged ({TRADES:,} trades, {SYMBOLS} symbols); "
        f"trade -> forming bar under that load: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"({len(ms)} probes); through the collector's IngestClient: {client_rate:,.0f} trades/s\n"
    )
    return [
        Figure("bars acked ingest (Publish, loopback)", rate, "trades/s", ">= 300,000"),
        Figure("collector IngestClient -> bars acked", client_rate, "trades/s", ">= 300,000"),
        Figure("trade -> forming bar p50 under load", p50, "ms"),
        Figure("trade -> forming bar p99 under load", p99, "ms", "<= 50 ms"),
    ]


if __name__ == "__main__":
    main()
