"""AnalyticsService over real gRPC on loopback, serving what the group commit stored in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pytest
import redis.asyncio as redis
from grpc import aio

from tickmesh.analytics.analytics_service import AnalyticsServicer
from tickmesh.analytics.bars import bar_from_proto
from tickmesh.analytics.pipeline import InstrumentAnalytics
from tickmesh.core.cache import indicators_key
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import from_proto
from tickmesh.v2 import analytics_service_pb2 as pb
from tickmesh.v2 import market_pb2

from .service_helpers import (
    NS_PER_MINUTE,
    ServiceParts,
    serve_analytics,
    service_parts,
    unique_instrument,
    value,
    walk_bars,
)

if TYPE_CHECKING:  # the async stub exists only in the generated .pyi
    from tickmesh.v2.analytics_service_pb2_grpc import AnalyticsServiceAsyncStub as Stub


@pytest.fixture
async def parts(db_pool: asyncpg.Pool, redis_client: redis.Redis) -> ServiceParts:
    """The service's parts on the run's storage."""
    return service_parts(db_pool, redis_client)


@pytest.fixture
async def stub(parts: ServiceParts) -> AsyncIterator[Stub]:
    """A client of an AnalyticsService served on a free loopback port."""
    async with serve_analytics(AnalyticsServicer(parts.store, parts.hub, parts.metrics)) as served:
        yield served


async def test_get_indicators_range_and_limit_oldest_first(parts: ServiceParts, stub: Stub) -> None:
    instrument = unique_instrument()
    bars = walk_bars(instrument, 40, seed=11)
    await parts.feed(bars)
    reply = await stub.GetIndicators(
        pb.GetIndicatorsRequest(
            instrument=instrument.to_proto(),
            timeframe=market_pb2.TIMEFRAME_1M,
            start_time_ns=bars[5].open_time_ns,
            end_time_ns=bars[30].open_time_ns,
            limit=10,
        )
    )
    assert [row.open_time_ns for row in reply.rows] == [b.open_time_ns for b in bars[20:30]]
    assert all(row.HasField("sma_20") and not row.HasField("sma_50") for row in reply.rows)
    everything = await stub.GetIndicators(
        pb.GetIndicatorsRequest(instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M)
    )
    assert len(everything.rows) == 40
    assert {(row.exchange, row.symbol) for row in everything.rows} == {
        (instrument.exchange, instrument.symbol)
    }
    assert not everything.rows[0].HasField("rsi")


async def test_get_features_default_limit_is_the_latest_row(
    parts: ServiceParts, stub: Stub
) -> None:
    instrument = unique_instrument()
    bars = walk_bars(instrument, 25, seed=12)
    await parts.feed(bars)
    reply = await stub.GetFeatures(
        pb.GetFeaturesRequest(instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M)
    )
    assert [row.open_time_ns for row in reply.rows] == [bars[-1].open_time_ns]
    assert reply.rows[0].exchange == instrument.exchange
    assert reply.rows[0].values["return_1"] == pytest.approx(
        value(bars[-1], "close") / value(bars[-2], "close") - 1
    )


GOOD = market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="BTCUSDT")
ONE_MINUTE = market_pb2.TIMEFRAME_1M


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"timeframe": ONE_MINUTE}, "instrument"),
        (
            {"instrument": market_pb2.Instrument(symbol="BTCUSDT"), "timeframe": ONE_MINUTE},
            "instrument",
        ),
        (
            {
                "instrument": market_pb2.Instrument(
                    exchange=market_pb2.EXCHANGE_BINANCE_SPOT, symbol="btc usdt"
                ),
                "timeframe": ONE_MINUTE,
            },
            "instrument",
        ),
        (
            {
                "instrument": market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_SPOT),
                "timeframe": ONE_MINUTE,
            },
            "instrument",
        ),
        ({"instrument": GOOD}, "timeframe"),
        ({"instrument": GOOD, "timeframe": ONE_MINUTE, "limit": 5001}, "limit"),
        ({"instrument": GOOD, "timeframe": ONE_MINUTE, "limit": -1}, "limit"),
        (
            {"instrument": GOOD, "timeframe": ONE_MINUTE, "start_time_ns": 9, "end_time_ns": 9},
            "end_time_ns",
        ),
        ({"instrument": GOOD, "timeframe": ONE_MINUTE, "start_time_ns": -1}, "start_time_ns"),
    ],
)
async def test_range_request_invalid_field_is_invalid_argument_naming_it(
    stub: Stub, request_fields: dict[str, object], field: str
) -> None:
    for call, message in (
        (stub.GetIndicators, pb.GetIndicatorsRequest(**request_fields)),  # type: ignore[arg-type]
        (stub.GetFeatures, pb.GetFeaturesRequest(**request_fields)),  # type: ignore[arg-type]
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await call(message)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith(f"{field}:")


@pytest.mark.parametrize(
    "instrument",
    [
        market_pb2.Instrument(),
        market_pb2.Instrument(symbol="BTCUSDT"),
        market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="BTC/USDT"),
    ],
)
async def test_get_quality_bad_instrument_is_invalid_argument_naming_it(
    stub: Stub, instrument: market_pb2.Instrument
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetQuality(pb.GetQualityRequest(instrument=instrument, timeframe=ONE_MINUTE))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("instrument:")


async def test_get_quality_not_found_before_first_then_latest(
    parts: ServiceParts, stub: Stub
) -> None:
    instrument = unique_instrument()
    request = pb.GetQualityRequest(instrument=instrument.to_proto(), timeframe=ONE_MINUTE)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetQuality(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert str(instrument) in (caught.value.details() or "")
    bars = walk_bars(instrument, 5, seed=13)
    await parts.feed(bars)
    reply = await stub.GetQuality(request)
    assert reply.quality.time_ns == bars[-1].open_time_ns + NS_PER_MINUTE
    assert reply.quality.score == 1.0
    assert "ohlc_consistency" in reply.quality.checks_passed


async def test_subscribe_replays_after_open_time_then_goes_live(
    parts: ServiceParts, stub: Stub
) -> None:
    instrument = unique_instrument()
    bars = walk_bars(instrument, 12, seed=14)
    await parts.feed(bars[:10])
    call = stub.Subscribe(
        pb.AnalyticsServiceSubscribeRequest(
            instruments=[instrument.to_proto()], resume_after_open_time_ns=bars[4].open_time_ns
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


async def test_subscribe_in_batches_carries_the_same_updates_in_updates(
    parts: ServiceParts, stub: Stub
) -> None:
    instrument = unique_instrument()
    bars = walk_bars(instrument, 12, seed=14)
    await parts.feed(bars[:10])
    one_by_one = stub.Subscribe(
        pb.AnalyticsServiceSubscribeRequest(
            instruments=[instrument.to_proto()], resume_after_open_time_ns=bars[4].open_time_ns
        )
    )
    singles = [await asyncio.wait_for(one_by_one.read(), 10) for _ in range(5)]
    one_by_one.cancel()
    call = stub.Subscribe(
        pb.AnalyticsServiceSubscribeRequest(
            instruments=[instrument.to_proto()],
            resume_after_open_time_ns=bars[4].open_time_ns,
            max_batch=3,
        )
    )
    replayed: list[pb.AnalyticsServiceSubscribeResponse] = []
    while len(replayed) < 5:
        message = await asyncio.wait_for(call.read(), 10)
        assert isinstance(message, pb.AnalyticsServiceSubscribeResponse)
        assert not message.HasField("indicators")
        assert 1 <= len(message.updates) <= 3
        replayed += message.updates
    assert replayed == singles  # the replay, 3 and 2 a response
    await parts.feed(bars[10:])
    live: list[pb.AnalyticsServiceSubscribeResponse] = []
    while len(live) < 2:
        message = await asyncio.wait_for(call.read(), 10)
        assert isinstance(message, pb.AnalyticsServiceSubscribeResponse)
        live += message.updates
    assert [m.indicators.open_time_ns for m in live] == [b.open_time_ns for b in bars[10:]]
    assert all(m.HasField("quality") for m in live)
    call.cancel()


async def test_subscribe_filters_other_instruments_and_rejects_bad_timeframe(
    parts: ServiceParts, stub: Stub
) -> None:
    wanted = unique_instrument()
    # The same symbol on another venue is another instrument: filtered out.
    other = InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, wanted.symbol)
    call = stub.Subscribe(pb.AnalyticsServiceSubscribeRequest(instruments=[wanted.to_proto()]))
    await asyncio.sleep(0.2)  # let the subscription register before anything is committed
    await parts.feed([*walk_bars(other, 2, seed=15), *walk_bars(wanted, 1, seed=16)])
    first = await asyncio.wait_for(call.read(), 10)
    assert isinstance(first, pb.AnalyticsServiceSubscribeResponse)
    assert (first.indicators.exchange, first.indicators.symbol) == (
        wanted.exchange,
        wanted.symbol,
    )
    call.cancel()
    bad = stub.Subscribe(pb.AnalyticsServiceSubscribeRequest(timeframes=[99]))  # type: ignore[list-item]
    with pytest.raises(aio.AioRpcError) as caught:
        await bad.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("timeframe:")


async def test_subscribe_bad_instrument_is_invalid_argument_naming_the_element(
    stub: Stub,
) -> None:
    request = pb.AnalyticsServiceSubscribeRequest(
        instruments=[GOOD, market_pb2.Instrument(symbol="ETHUSDT")]
    )
    bad = stub.Subscribe(request)
    with pytest.raises(aio.AioRpcError) as caught:
        await bad.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("instruments[1]:")


async def test_same_symbol_on_spot_and_usdm_processed_stored_and_served_separately(
    parts: ServiceParts, stub: Stub, db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    usdm = unique_instrument("BOTH")
    spot = InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, usdm.symbol)
    by_venue = {
        usdm: walk_bars(usdm, 30, seed=21, first_change_id=1),
        spot: walk_bars(spot, 30, seed=22, first_change_id=1),
    }
    # Side by side: each minute's two bars arrive together, with interleaved change ids.
    interleaved: list[market_pb2.Bar] = []
    for index, (future, cash) in enumerate(zip(by_venue[usdm], by_venue[spot], strict=True)):
        future.change_id, cash.change_id = 2 * index + 1, 2 * index + 2
        interleaved += [future, cash]
    await parts.feed(interleaved)
    assert len(parts.engine) == 2

    for instrument, bars in by_venue.items():
        # Each instrument's rows equal a computation over its own bars alone.
        alone = InstrumentAnalytics(instrument, from_proto(market_pb2.TIMEFRAME_1M))
        expected = [
            alone.on_bar(bar_from_proto(bar), bar.open_time_ns + NS_PER_MINUTE) for bar in bars
        ]
        wanted = instrument.to_proto()
        indicators = await stub.GetIndicators(
            pb.GetIndicatorsRequest(instrument=wanted, timeframe=ONE_MINUTE)
        )
        assert list(indicators.rows) == [r.indicators[0].to_proto() for r in expected]
        features = await stub.GetFeatures(
            pb.GetFeaturesRequest(instrument=wanted, timeframe=ONE_MINUTE, limit=5000)
        )
        assert list(features.rows) == [r.features[0].to_proto() for r in expected]
        quality = await stub.GetQuality(
            pb.GetQualityRequest(instrument=wanted, timeframe=ONE_MINUTE)
        )
        assert (quality.quality.exchange, quality.quality.symbol) == (
            instrument.exchange,
            instrument.symbol,
        )
        assert quality.quality.time_ns == bars[-1].open_time_ns + NS_PER_MINUTE
        cached = await redis_client.hgetall(indicators_key(instrument, "1m"))
        assert float(cached[b"sma_20"]) == expected[-1].indicators[0].sma_20
        for table in ("indicators", "ml_features", "data_quality_metrics"):
            stored = await db_pool.fetchval(
                f"SELECT count(*) FROM {table} WHERE exchange = $1 AND symbol = $2",
                instrument.venue,
                instrument.symbol,
            )
            assert stored == 30, table
    spot_sma = await redis_client.hget(indicators_key(spot, "1m"), "sma_20")
    assert spot_sma != await redis_client.hget(indicators_key(usdm, "1m"), "sma_20")

    # A replay filtered to one venue returns that venue's rows only; unfiltered, both.
    resume = by_venue[usdm][24].open_time_ns
    only_spot = stub.Subscribe(
        pb.AnalyticsServiceSubscribeRequest(
            instruments=[spot.to_proto()], resume_after_open_time_ns=resume
        )
    )
    replayed = [await asyncio.wait_for(only_spot.read(), 10) for _ in range(5)]
    only_spot.cancel()
    assert [(m.indicators.exchange, m.indicators.open_time_ns) for m in replayed] == [
        (spot.exchange, bar.open_time_ns) for bar in by_venue[spot][25:]
    ]
    assert all(m.quality.exchange == spot.exchange for m in replayed)
    both = stub.Subscribe(
        pb.AnalyticsServiceSubscribeRequest(
            instruments=[spot.to_proto(), usdm.to_proto()], resume_after_open_time_ns=resume
        )
    )
    replayed = [await asyncio.wait_for(both.read(), 10) for _ in range(10)]
    both.cancel()
    # Keyset order: open time, then venue label ("binance_spot" before "binance_usdm").
    assert [(m.indicators.exchange, m.indicators.open_time_ns) for m in replayed] == [
        (instrument.exchange, bar.open_time_ns)
        for index in range(25, 30)
        for instrument, bar in ((spot, by_venue[spot][index]), (usdm, by_venue[usdm][index]))
    ]
