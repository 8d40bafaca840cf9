"""Test-side ingest: fixture captures into batches, and a publisher that resends unacked ones.

The collector's own ingest client is tested with the collector; these tests exercise the bar
service's side of the contract, so they speak IngestService.Publish directly.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc import aio

from tickmesh.collector.binance.decoder import BinanceStreamDecoder
from tickmesh.core.decimals import parse_decimal, power_of_ten
from tickmesh.core.fixtures import fixtures_root as fixtures_root  # the tests import it here
from tickmesh.v2 import ingest_service_pb2, ingest_service_pb2_grpc, market_pb2

NS_PER_MS = 1_000_000


def final_minute_trades(
    symbol: str, minute_ms: int, first_id: int = 1, closing_offset_ms: int = 65_000
) -> market_pb2.SymbolTrades:
    """Three simulator-venue trades in the minute opening at `minute_ms` and one `closing_offset_ms`
    after its open (in a later minute), ids from `first_id`: the minute's bar is final at once."""
    offsets_ms = (5_000, 20_000, 40_000, closing_offset_ms)
    times = [(minute_ms + offset) * NS_PER_MS for offset in offsets_ms]
    return market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=[first_id + i for i in range(4)],
        prices=[100, 105, 99, 101],
        quantities=[1, 2, 1, 1],
        price_scale=0,
        quantity_scale=0,
        event_time_ns=times,
        receive_time_ns=times,
    )


def capture_batches(
    path: Path, exchange: int, stream_id: str, batch_size: int = 1000
) -> list[market_pb2.TradeBatch]:
    """A "<local ts> <raw json>" capture decoded by the collector's parser into numbered batches."""
    decoder = BinanceStreamDecoder(market_pb2.Exchange.ValueType(exchange))
    batches: list[market_pb2.TradeBatch] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            stamp, _, raw = line.partition(" ")
            if not raw.strip():
                continue
            decoder.feed(raw, int(stamp))
            if decoder.pending >= batch_size:
                batches.append(_batch(stream_id, len(batches) + 1, decoder.take()))
    if decoder.pending:
        batches.append(_batch(stream_id, len(batches) + 1, decoder.take()))
    return batches


def mantissas(texts: list[str], field: str) -> tuple[list[int], int]:
    """Decimal strings as exact int mantissas at one scale (the finest among them)."""
    parsed = [parse_decimal(text, field) for text in texts]
    scale = max(s for _, s in parsed)
    return [m * power_of_ten(scale - s) for m, s in parsed], scale


def xrpeth_batches(
    path: Path, stream_id: str, batch_size: int = 1000
) -> list[market_pb2.TradeBatch]:
    """The derived XRPETH aggTrades CSV as numbered batches of exact mantissas.

    Each aggregate counts l - f + 1 trades; is_buyer_maker True means the seller was the taker.
    """
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    batches: list[market_pb2.TradeBatch] = []
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        prices, price_scale = mantissas([r["price"] for r in part], "price")
        quantities, quantity_scale = mantissas([r["quantity"] for r in part], "quantity")
        run = market_pb2.SymbolTrades(
            exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
            symbol="XRPETH",
            trade_ids=[int(r["agg_trade_id"]) for r in part],
            prices=prices,
            quantities=quantities,
            price_scale=price_scale,
            quantity_scale=quantity_scale,
            sides=[
                market_pb2.AGGRESSOR_SIDE_SELL
                if r["is_buyer_maker"] == "True"
                else market_pb2.AGGRESSOR_SIDE_BUY
                for r in part
            ],
            event_time_ns=[int(r["transact_time"]) * NS_PER_MS for r in part],
            trade_counts=[int(r["last_trade_id"]) - int(r["first_trade_id"]) + 1 for r in part],
        )
        batches.append(_batch(stream_id, len(batches) + 1, [run]))
    return batches


def _batch(
    stream_id: str, sequence: int, runs: list[market_pb2.SymbolTrades]
) -> market_pb2.TradeBatch:
    return market_pb2.TradeBatch(stream_id=stream_id, sequence=sequence, trades=runs)


async def publish(address: str, batches: list[market_pb2.TradeBatch]) -> int:
    """Send every batch on one Publish call; return the last acknowledged sequence."""
    async with aio.insecure_channel(address) as channel:
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)

        async def requests() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
            for batch in batches:
                yield ingest_service_pb2.PublishRequest(batch=batch)

        acked = 0
        async for response in stub.Publish(requests()):
            acked = max(acked, response.acked_sequence)
        return acked


async def publish_until_acked(
    address: str, batches: list[market_pb2.TradeBatch], pace_seconds: float = 0.0
) -> int:
    """Publish, reconnecting and resending every unacknowledged batch until the last is acked."""
    acked = 0
    while acked < batches[-1].sequence:
        pending = [b for b in batches if b.sequence > acked]
        try:
            async with aio.insecure_channel(address) as channel:
                stub = ingest_service_pb2_grpc.IngestServiceStub(channel)

                async def requests(
                    queue: list[market_pb2.TradeBatch] = pending,
                ) -> AsyncIterator[ingest_service_pb2.PublishRequest]:
                    for batch in queue:
                        yield ingest_service_pb2.PublishRequest(batch=batch)
                        if pace_seconds:
                            await asyncio.sleep(pace_seconds)

                async for response in stub.Publish(requests(), wait_for_ready=True):
                    acked = max(acked, response.acked_sequence)
        except aio.AioRpcError as error:
            # A rejected batch is final; anything else is the connection dying with the server.
            if error.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.FAILED_PRECONDITION,
            ):
                raise
            await asyncio.sleep(0.2)
    return acked
