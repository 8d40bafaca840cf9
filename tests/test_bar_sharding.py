"""Two bar service shards on one database: each instrument is ingested by exactly one of them."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_address, shard_of
from tickmesh.core.timeframes import NS_PER_MINUTE
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from .ingest_helpers import publish
from .mesh_processes import ServiceProcess

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
# BTCUSDT on both venues: two instruments, each routed by its own text form.
INSTRUMENTS = tuple(
    InstrumentId(exchange, symbol)
    for exchange, symbol in (
        (SPOT, "BTCUSDT"),
        (USDM, "BTCUSDT"),
        (SPOT, "ETHUSDT"),
        (SPOT, "SOLUSDT"),
        (SPOT, "XRPUSDT"),
        (SPOT, "ADAUSDT"),
        (SPOT, "DOGEUSDT"),
    )
)
# 2023-01-01T00:00Z, in the past: the shard runs the symbol on its trades' event times.
START_NS = 1_672_531_200 * 1_000_000_000


def _batch(instrument: InstrumentId, sequence: int) -> market_pb2.TradeBatch:
    """Three trades in the first minute and one six minutes later, so the first minute is final."""
    return market_pb2.TradeBatch(
        stream_id=f"shard-{instrument}",
        sequence=sequence,
        trades=[
            market_pb2.SymbolTrades(
                exchange=market_pb2.Exchange.ValueType(instrument.exchange),
                symbol=instrument.symbol,
                trade_ids=[1, 2, 3, 4],
                prices=[100, 125, 90, 110],  # 10, 12.5, 9, 11 at scale 1
                price_scale=1,
                quantities=[1, 1, 1, 1],
                event_time_ns=[START_NS + i * 1_000_000_000 for i in range(3)]
                + [START_NS + 6 * NS_PER_MINUTE],
            )
        ],
    )


async def _one_minute_bars(address: str, instrument: InstrumentId) -> list[market_pb2.Bar]:
    async with aio.insecure_channel(address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        response = await stub.GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M, limit=10
            )
        )
        return list(response.bars)


async def _first_streamed(address: str, instrument: InstrumentId) -> market_pb2.Bar:
    async with aio.insecure_channel(address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        call = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(
                instruments=[instrument.to_proto()], resume_after_change_id=0
            )
        )
        async for response in call:
            bar: market_pb2.Bar = response.bar
            return bar
    raise AssertionError("the stream ended without a bar")


async def test_each_instrument_is_ingested_by_exactly_one_shard(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    assert {shard_of(i, 2) for i in INSTRUMENTS} == {0, 1}
    shards = [
        ServiceProcess(
            "bars",
            {
                "TICKMESH_DATABASE_URL": fresh_database_url,
                "TICKMESH_REDIS_URL": fresh_redis_url,
                "TICKMESH_BARS_SHARD_INDEX": str(index),
                "TICKMESH_BARS_SHARD_COUNT": "2",
            },
        )
        for index in range(2)
    ]
    addresses = [shard.address for shard in shards]
    try:
        for shard in shards:
            await shard.start()
        for instrument in INSTRUMENTS:
            owner = shard_address(instrument, addresses)
            assert owner == addresses[shard_of(instrument, 2)]
            (other,) = (a for a in addresses if a != owner)
            assert await publish(owner, [_batch(instrument, 1)]) == 1
            with pytest.raises(aio.AioRpcError) as raised:
                await publish(other, [_batch(instrument, 1)])
            assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # Reads too: only the owner has the instrument's cache and live bars.
            for call in (_one_minute_bars(other, instrument), _first_streamed(other, instrument)):
                with pytest.raises(aio.AioRpcError) as raised:
                    await call
                assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert f"{instrument} belongs to bar shard {shard_of(instrument, 2)} of 2" in str(
                    raised.value.details()
                )
        for instrument in INSTRUMENTS:
            bars = await _one_minute_bars(shard_address(instrument, addresses), instrument)
            assert [(b.open_time_ns, b.trade_count, b.high, b.low) for b in bars][:1] == [
                (START_NS, 3, "12.5", "9")
            ]
    finally:
        for shard in shards:
            await shard.kill()
