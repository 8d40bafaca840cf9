"""Benchmark: collector parse + publish throughput, and the acked ingest rate to a real bar service.

1. One core, no network: real Binance frames (the USD-M and spot captures in
   shared/fixtures) through the stream decoder, the gap book (exactly-once filter) and
   the ingest client's batching into numbered, serialized PublishRequests.
2. Over loopback: the same trades through IngestClient to a `python -m tickmesh.bars`
   process (embedded PostgreSQL and Redis), counting trades per second until every
   batch is acknowledged as durable.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.report import Figure, print_table
from tickmesh.collector.binance import BinanceStreamDecoder
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.core.fixtures import fixtures_root as _fixtures_dir
from tickmesh.v2 import market_pb2

CAPTURES = [
    (
        "binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt",
        market_pb2.EXCHANGE_BINANCE_USDM,
    ),
    (
        "binance_spot/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt",
        market_pb2.EXCHANGE_BINANCE_SPOT,
    ),
]


def _frames(path: Path) -> list[bytes]:
    with path.open("rb") as handle:
        return [line.split(b" ", 1)[1].rstrip(b"\n") for line in handle if b" " in line]


def _client(address: str) -> tuple[IngestClient, GapBook]:
    metrics = CollectorMetrics(CollectorRegistry())
    config = IngestConfig(
        address,
        f"bench-{secrets.token_hex(4)}",
        max_buffered_trades=10_000_000,
        max_in_flight_batches=100_000,
    )
    return IngestClient(config, metrics), GapBook(metrics)


def parse_publish_rate() -> float:
    """Trades/s through decode, exactly-once filter, batching and serialization on one core."""
    fixtures = _fixtures_dir()
    cases = [(_frames(fixtures / name), exchange) for name, exchange in CAPTURES]
    client, gaps = _client("127.0.0.1:1")
    trades = 0
    start = time.perf_counter()
    for frames, exchange in cases:
        decoder = BinanceStreamDecoder(exchange)
        received = time.time_ns()
        for frame in frames:
            decoder.feed(frame, received)
            if decoder.pending >= 1000:
                client.submit(run for run in map(gaps.deliver, decoder.take()) if run is not None)
        client.submit(run for run in map(gaps.deliver, decoder.take()) if run is not None)
        trades += decoder.stats.trades
    for sent in client._form_batches():
        sent.request.SerializeToString()
    return trades / (time.perf_counter() - start)


async def _acked_rate(
    address: str, frames_by_exchange: list[tuple[list[bytes], market_pb2.Exchange.ValueType]]
) -> float:
    client, gaps = _client(address)
    runner = asyncio.create_task(client.run())
    await client.wait_connected()
    start = time.perf_counter()
    trades = 0
    for frames, exchange in frames_by_exchange:
        decoder = BinanceStreamDecoder(exchange)
        for frame in frames:
            decoder.feed(frame, time.time_ns())
        trades += decoder.stats.trades
        client.submit(run for run in map(gaps.deliver, decoder.take()) if run is not None)
    async with asyncio.timeout(50):
        await client.flush()
    elapsed = time.perf_counter() - start
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    return trades / elapsed


async def acked_ingest_rate() -> float:
    """Trades/s acknowledged as durable by a real bar service over loopback."""
    from tickmesh.mesh.embedded import EmbeddedServers

    fixtures = _fixtures_dir()
    cases = [(_frames(fixtures / name), exchange) for name, exchange in CAPTURES]
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        from tests.mesh_processes import ServiceProcess

        process = ServiceProcess(
            "bars",
            {
                "TICKMESH_DATABASE_URL": servers.start_postgres(),
                "TICKMESH_REDIS_URL": servers.start_redis(),
            },
        )
        await process.start()
        try:
            return await _acked_rate(process.address, cases)
        finally:
            await process.kill()


def main() -> list[Figure]:
    """Run both measurements, print them and return the figures."""
    # The bar service is started by the whole-process tests' helper (tests/ at the repo root).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    figures = [
        Figure(
            "collector parse + publish (1 core)", parse_publish_rate(), "trades/s", ">= 200,000"
        ),
        Figure(
            "collector acked ingest to bars (loopback)",
            asyncio.run(acked_ingest_rate()),
            "trades/s",
        ),
    ]
    print_table(figures)
    return figures


if __name__ == "__main__":
    main()
