"""The bar service under load: acknowledged ingest rate and trade-to-forming-bar latency.

A real `python -m tickmesh.bars` process on embedded PostgreSQL and Redis receives
6,000,000 live-timestamped trades of 40 symbols in batches of 1000 on one Publish stream,
as fast as acknowledgements allow (goal: at least 300,000 trades/s sustained). Meanwhile a
probe symbol gets one trade every 300 ms on a second stream and a Subscribe client times
each probe until its forming bar arrives (goal: p99 at most 50 ms). Prices and quantities
travel as exact int64 mantissas (scale 2) with aggressor sides, as the collector sends them.

By default the bar service serves mutual TLS, as `tickmesh run` and a cluster do: the flood
publishes with a collector certificate and the probe reads with a reader's. `--transport
plaintext` measures without TLS, and `--transport both` runs both and reports the TLS cost.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
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
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.tls import TlsMaterial
from tickmesh.mesh.certs import init_ca, issue
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


def dial(address: str, tls: TlsMaterial | None) -> aio.Channel:
    if tls is None:
        return aio.insecure_channel(address)
    return aio.secure_channel(address, tls.channel_credentials())


async def wait_serving(address: str, tls: TlsMaterial | None) -> None:
    async with dial(address, tls) as channel:
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


async def _collector_client_rate(address: str, tls: TlsMaterial | None) -> float:
    """Trades/s acknowledged when the collector's own IngestClient does the publishing."""
    from prometheus_client import CollectorRegistry

    from tickmesh.collector.collector_metrics import CollectorMetrics
    from tickmesh.collector.ingest_client import IngestClient, IngestConfig

    runs = [request.batch.trades[0] for request in _flood_batches(stream="bench-client")]
    client = IngestClient(
        IngestConfig(address, "bench-client", max_buffered_trades=10_000_000),
        CollectorMetrics(CollectorRegistry()),
        channel_factory=functools.partial(open_channel, tls=tls),
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


def issue_certificates(state: Path) -> Path:
    """A CA under `state` with the bar service's, a collector's and a reader's certificates."""
    tls_root = state / "tls"
    init_ca(tls_root)
    for role in ("bars", "collector", "reader"):
        issue(tls_root, role)
    return tls_root


async def start_bar_service(
    database_url: str, redis_url: str, tls_root: Path | None
) -> asyncio.subprocess.Process:
    """A bar service process on ADDRESS: mutual TLS with `tls_root`'s certificates, else plaintext."""
    transport = {"TICKMESH_GRPC_INSECURE": "true"}
    if tls_root is not None:
        transport = {"TICKMESH_TLS_DIR": str(tls_root / "bars"), "TICKMESH_GRPC_INSECURE": "false"}
    environment = {
        **os.environ,
        **transport,
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_BARS_LISTEN": ADDRESS,
        "TICKMESH_BARS_METRICS_PORT": "0",
        "TICKMESH_LOG_LEVEL": "WARNING",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickmesh.bars", env=environment
    )


async def _run(
    database_url: str, redis_url: str, tls_root: Path | None
) -> tuple[float, list[float], float]:
    """One bar service process (mutual TLS when `tls_root` holds the certificates)."""
    collector = reader = None
    if tls_root is not None:
        collector = TlsMaterial.load(tls_root / "collector")
        reader = TlsMaterial.load(tls_root / "reader")
    process = await start_bar_service(database_url, redis_url, tls_root)
    try:
        await wait_serving(ADDRESS, reader)
        # Publishing is the collector's right, reading the reader's: one channel each.
        async with dial(ADDRESS, collector) as publisher, dial(ADDRESS, reader) as viewer:
            ingest = ingest_service_pb2_grpc.IngestServiceStub(publisher)
            bars = bar_service_pb2_grpc.BarServiceStub(viewer)
            stop = asyncio.Event()
            probing = asyncio.create_task(_probe(ingest, bars, stop))
            trades, elapsed = await _flood(ingest)
            stop.set()
            latencies = await probing
        return trades / elapsed, latencies, await _collector_client_rate(ADDRESS, collector)
    finally:
        process.kill()
        await process.wait()


def main(tls: bool = True) -> list[Figure]:
    """Measure the acknowledged ingest rate and the forming-bar latency under that load."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        tls_root = issue_certificates(Path(state)) if tls else None
        rate, latencies, client_rate = asyncio.run(
            _run(servers.start_postgres(), servers.start_redis(), tls_root)
        )
    transport = "mutual TLS" if tls else "plaintext"
    ms = sorted(1000 * latency for latency in latencies)
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
    sys.stdout.write(
        f"bar service ({transport}): {rate:,.0f} trades/s acknowledged ({TRADES:,} trades, {SYMBOLS} symbols); "
        f"trade -> forming bar under that load: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"({len(ms)} probes); through the collector's IngestClient: {client_rate:,.0f} trades/s\n"
    )
    return [
        Figure(
            f"bars acked ingest (Publish, loopback, {transport})", rate, "trades/s", ">= 300,000"
        ),
        Figure(
            f"collector IngestClient -> bars acked ({transport})",
            client_rate,
            "trades/s",
            ">= 300,000",
        ),
        Figure(f"trade -> forming bar p50 under load ({transport})", p50, "ms"),
        Figure(f"trade -> forming bar p99 under load ({transport})", p99, "ms", "<= 50 ms"),
    ]


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--transport",
        choices=("tls", "plaintext", "both"),
        default="tls",
        help="mutual TLS as deployed (default), plaintext, or both to see what TLS costs",
    )
    choice = parser.parse_args().transport
    figures = {
        tls: main(tls) for tls in ((True, False) if choice == "both" else (choice == "tls",))
    }
    if len(figures) == 2:
        with_tls, without = figures[True][0].value, figures[False][0].value
        sys.stdout.write(
            f"TLS cost on acked ingest: plaintext {without:,.0f} -> mutual TLS "
            f"{with_tls:,.0f} trades/s ({100 * (with_tls / without - 1):+.1f}%)\n"
        )


if __name__ == "__main__":
    _cli()
