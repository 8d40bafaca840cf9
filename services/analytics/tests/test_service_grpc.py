"""AnalyticsService over real gRPC on loopback, serving what the group commit stored in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import asyncpg
import grpc
import pytest
import redis.asyncio as redis
from grpc import aio

from tickmesh.analytics.analytics_service import AnalyticsServicer
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.grpc_server import GrpcServer, ServiceRegistration
from tickmesh.core.metrics import CoreMetrics
from tickmesh.v1 import analytics_service_pb2 as pb
from tickmesh.v1 import analytics_service_pb2_grpc, market_pb2

from .service_helpers import NS_PER_MINUTE, ServiceParts, service_parts, unique_symbol, walk_bars

if TYPE_CHECKING:  # the async stub exists only in the generated .pyi
    from tickmesh.v1.analytics_service_pb2_grpc import AnalyticsServiceAsyncStub as Stub


@pytest.fixture
async def parts(db_pool: asyncpg.Pool, redis_client: redis.Redis) -> ServiceParts:
    """The service's parts on the run's storage."""
    return service_parts(db_pool, redis_client)


@pytest.fixture
async def stub(parts: ServiceParts) -> AsyncIterator[Stub]:
    """A client of an AnalyticsService served on a free loopback port."""
    servicer = AnalyticsServicer(parts.store, parts.hub, parts.metrics)
    registration = ServiceRegistration(
        "tickmesh.v1.AnalyticsService",
        analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server,
        servicer,
    )
    server = GrpcServer("127.0.0.1:0", [registration], CoreMetrics(), drain_seconds=0.1)
    await server.start()
    channel = open_channel(server.address)
    # grpc is untyped here, so mypy cannot pick the stub's aio.Channel overload by itself.
    yield cast("Stub", analytics_service_pb2_grpc.AnalyticsServiceStub(channel))
    await channel.close()
    await server.stop()


async def test_get_indicators_range_and_limit_oldest_first(parts: ServiceParts, stub: Stub) -> None:
    symbol = unique_symbol()
    bars = walk_bars(symbol, 40, seed=11)
    await parts.feed(bars)
    reply = await stub.GetIndicators(
        pb.GetIndicatorsRequest(
            symbol=symbol,
            timeframe=market_pb2.TIMEFRAME_1M,
            start_time_ns=bars[5].open_time_ns,
            end_time_ns=bars[30].open_time_ns,
            limit=10,
        )
    )
    assert [row.open_time_ns for row in reply.rows] == [b.open_time_ns for b in bars[20:30]]
    assert all(row.HasField("sma_20") and not row.HasField("sma_50") for row in reply.rows)
    everything = await stub.GetIndicators(
        pb.GetIndicatorsRequest(symbol=symbol, timeframe=market_pb2.TIMEFRAME_1M)
    )
    assert len(everything.rows) == 40
    assert not everything.rows[0].HasField("rsi")


async def test_get_features_default_limit_is_the_latest_row(
    parts: ServiceParts, stub: Stub
) -> None:
    symbol = unique_symbol()
    bars = walk_bars(symbol, 25, seed=12)
    await parts.feed(bars)
    reply = await stub.GetFeatures(
        pb.GetFeaturesRequest(symbol=symbol, timeframe=market_pb2.TIMEFRAME_1M)
    )
    assert [row.open_time_ns for row in reply.rows] == [bars[-1].open_time_ns]
    assert reply.rows[0].values["return_1"] == pytest.approx(bars[-1].close / bars[-2].close - 1)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"timeframe": market_pb2.TIMEFRAME_1M}, "symbol"),
        ({"symbol": "X"}, "timeframe"),
        ({"symbol": "X", "timeframe": market_pb2.TIMEFRAME_1M, "limit": 5001}, "limit"),
        ({"symbol": "X", "timeframe": market_pb2.TIMEFRAME_1M, "limit": -1}, "limit"),
        (
            {
                "symbol": "X",
                "timeframe": market_pb2.TIMEFRAME_1M,
                "start_time_ns": 9,
                "end_time_ns": 9,
            },
            "end_time_ns",
        ),
        (
            {"symbol": "X", "timeframe": market_pb2.TIMEFRAME_1M, "start_time_ns": -1},
            "start_time_ns",
        ),
    ],
)
async def test_range_request_invalid_field_is_invalid_argument_naming_it(
    stub: Stub, request_fields: dict[str, int | str], field: str
) -> None:
    for call, message in (
        (stub.GetIndicators, pb.GetIndicatorsRequest(**request_fields)),  # type: ignore[arg-type]
        (stub.GetFeatures, pb.GetFeaturesRequest(**request_fields)),  # type: ignore[arg-type]
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await call(message)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith(f"{field}:")


async def test_get_quality_not_found_before_first_then_latest(
    parts: ServiceParts, stub: Stub
) -> None:
    symbol = unique_symbol()
    request = pb.GetQualityRequest(symbol=symbol, timeframe=market_pb2.TIMEFRAME_1M)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetQuality(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    bars = walk_bars(symbol, 5, seed=13)
    await parts.feed(bars)
    reply = await stub.GetQuality(request)
    assert reply.quality.time_ns == bars[-1].open_time_ns + NS_PER_MINUTE
    assert reply.quality.score == 1.0
    assert "ohlc_consistency" in reply.quality.checks_passed


async def test_subscribe_replays_after_open_time_then_goes_live(
    parts: ServiceParts, stub: Stub
) -> None:
    symbol = unique_symbol()
    bars = walk_bars(symbol, 12, seed=14)
    await parts.feed(bars[:10])
    call = stub.Subscribe(
        pb.AnalyticsServiceSubscribeRequest(
            symbols=[symbol], resume_after_open_time_ns=bars[4].open_time_ns
        )
    )
    received: list[pb.AnalyticsServiceSubscribeResponse] = []
    async for message in call:
        received.append(message)
        if len(received) == 5:
            break
    assert [m.indicators.open_time_ns for m in received] == [b.open_time_ns for b in bars[5:10]]
    assert all(m.features.feature_version and m.quality.score > 0 for m in received)
    # Live: what is committed from now on arrives once, after the replay.
    await parts.feed(bars[10:])
    live = [await asyncio.wait_for(call.read(), 10), await asyncio.wait_for(call.read(), 10)]
    assert [m.indicators.open_time_ns for m in live] == [b.open_time_ns for b in bars[10:]]
    assert all(m.HasField("quality") for m in live)
    call.cancel()


async def test_subscribe_filters_other_symbols_and_rejects_bad_timeframe(
    parts: ServiceParts, stub: Stub
) -> None:
    wanted, other = unique_symbol(), unique_symbol()
    call = stub.Subscribe(pb.AnalyticsServiceSubscribeRequest(symbols=[wanted]))
    await asyncio.sleep(0.2)  # let the subscription register before anything is committed
    await parts.feed([*walk_bars(other, 2, seed=15), *walk_bars(wanted, 1, seed=16)])
    first = await asyncio.wait_for(call.read(), 10)
    assert isinstance(first, pb.AnalyticsServiceSubscribeResponse)
    assert first.indicators.symbol == wanted
    call.cancel()
    bad = stub.Subscribe(pb.AnalyticsServiceSubscribeRequest(timeframes=[99]))  # type: ignore[list-item]
    with pytest.raises(aio.AioRpcError) as caught:
        await bad.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("timeframe:")
