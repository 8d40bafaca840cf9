"""Benchmark: collector parse + publish throughput, and the acked ingest rate to a real bar service.

1. One core, no network: real Binance frames (the USD-M and spot captures in
   shared/fixtures) through the stream decoder, the gap book (exactly-once filter) and
   the ingest client's batching into numbered, serialized PublishRequests.
1b. The same path for a whole market (issue 15): the simulator's 2,000 Zipf-skewed
   instruments over spot and USD-M, published every 500 trades of a venue (a 50 ms flush
   at 20,000 trades/s), so most instruments have one or two trades per run.
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
from tickmesh.collector.simulator import Market, WholeMarket
from tickmesh.collector.simulator.frames import trade_payload
from tickmesh.collector.simulator.hub import combined_frame
from tickmesh.collector.simulator.whole_market import whole_market_events
from tickmesh.core.fixtures import fixtures_root as _fixtures_dir
from tickmesh.v2 import market_pb2

THIN_INSTRUMENTS = 2_000
THIN_TRADES = 200_000
# Trades of one venue per publish in the whole-market case: a 50 ms flush at 10,000 trades/s.
THIN_FLUSH = 500

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


def whole_market_frames(
    instruments: int = THIN_INSTRUMENTS, trades: int = THIN_TRADES
) -> list[tuple[list[bytes], market_pb2.Exchange.ValueType]]:
    """The simulator's whole-market trades as combined-stream frames, one list per venue."""
    spec = WholeMarket(instruments, trades=trades)
    by_market: dict[Market, list[bytes]] = {Market.SPOT: [], Market.USDM: []}
    for event in whole_market_events(spec, seed=15, start_ms=1_723_161_600_000):
        assert event.trade is not None
        frame = combined_frame(event.stream, trade_payload(event.trade))
        by_market[event.market].append(frame.encode())
    return [
        (by_market[Market.SPOT], market_pb2.EXCHANGE_BINANCE_SPOT),
        (by_market[Market.USDM], market_pb2.EXCHANGE_BINANCE_USDM),
    ]


def capture_frames() -> list[tuple[list[bytes], market_pb2.Exchange.ValueType]]:
    """The real USD-M and spot captures' frames."""
    fixtures = _fixtures_dir()
    return [(_frames(fixtures / name), exchange) for name, exchange in CAPTURES]


def parse_publish_rate(
    cases: list[tuple[list[bytes], market_pb2.Exchange.ValueType]] | None = None,
    flush_every: int = 1000,
) -> float:
    """Trades/s through decode, exactly-once filter, batching and serialization on one core."""
    if cases is None:
        cases = capture_frames()
    client, gaps = _client("127.0.0.1:1")
    trades = 0
    start = time.perf_counter()
    for frames, exchange in cases:
        decoder = BinanceStreamDecoder(exchange)
        received = time.time_ns()
        for frame in frames:
            decoder.feed(frame, received)
            if decoder.pending >= flush_every:
                client.submit(gaps.deliver_many(decoder.take()))
        client.submit(gaps.deliver_many(decoder.take()))
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
        client.submit(gaps.deliver_many(decoder.take()))
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
    """Run the measurements, print them and return the figures (`parse`: the one-core ones)."""
    # The bar service is started by the whole-process tests' helper (tests/ at the repo root).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    figures = [
        Figure(
            "collector parse + publish (1 core)", parse_publish_rate(), "trades/s", ">= 200,000"
        ),
        Figure(
            "collector parse + publish, 2,000 thin instruments (1 core)",
            parse_publish_rate(whole_market_frames(), THIN_FLUSH),
            "trades/s",
        ),
    ]
    if sys.argv[1:] == ["parse"]:
        print_table(figures)
        return figures
    figures += [
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
