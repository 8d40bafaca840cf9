"""BarService streams and reads as a client sees them: resume, forming bars, slow readers, cache."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from .ingest_helpers import capture_batches, fixtures_root, publish, xrpeth_batches
from .mesh_processes import ServiceProcess

CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"
BTCUSDT = market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="BTCUSDT")
XRPETH = "binance_spot/freqtrade_XRPETH/XRPETH-aggTrades-2019-10-11_to_2019-10-13.derived.csv"


def _batches(stream_id: str, size: int = 200) -> list[market_pb2.TradeBatch]:
    return capture_batches(
        fixtures_root() / CAPTURE, market_pb2.EXCHANGE_BINANCE_USDM, stream_id, size
    )


async def _start_bars(database_url: str, redis_url: str, **settings: str) -> ServiceProcess:
    environment = {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
    }
    environment.update({f"TICKMESH_BARS_{k.upper()}": v for k, v in settings.items()})
    process = ServiceProcess("bars", environment)
    await process.start()
    return process


@pytest.fixture
async def bars(fresh_database_url: str, fresh_redis_url: str) -> AsyncIterator[ServiceProcess]:
    """A bar service on an empty database and Redis."""
    process = await _start_bars(fresh_database_url, fresh_redis_url)
    yield process
    await process.kill()


async def _all_final_change_ids(address: str) -> set[int]:
    async with aio.insecure_channel(address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        found: set[int] = set()
        for timeframe in range(1, 7):
            response = await stub.GetBars(
                bar_service_pb2.GetBarsRequest(
                    instrument=BTCUSDT,
                    timeframe=market_pb2.Timeframe.ValueType(timeframe),
                    limit=5000,
                )
            )
            found.update(bar.change_id for bar in response.bars)
        return found


@pytest.mark.parametrize("max_batch", [0, 7])
async def test_subscribe_resume_replays_then_goes_live_without_gap_or_duplicate(
    bars: ServiceProcess, max_batch: int
) -> None:
    batches = _batches("resume")
    half = len(batches) // 2
    await publish(bars.address, batches[:half])
    received: list[market_pb2.Bar] = []
    sizes: list[int] = []
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        stream = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(resume_after_change_id=0, max_batch=max_batch)
        )
        reading = asyncio.create_task(_read_into(stream, received, sizes))
        await publish(bars.address, batches[half:])
        expected = await _all_final_change_ids(bars.address)
        for _ in range(100):
            if {bar.change_id for bar in received} >= expected:
                break
            await asyncio.sleep(0.1)
        reading.cancel()
    change_ids = [bar.change_id for bar in received]
    assert len(change_ids) == len(set(change_ids)), "a bar was delivered twice"
    assert change_ids == sorted(change_ids)
    assert set(change_ids) == expected
    # Asked for batches, replayed and live bars come up to max_batch a response, in `bars`.
    assert max(sizes) == (max_batch or 1)


async def test_subscribe_resume_from_middle_gets_exactly_the_later_changes(
    bars: ServiceProcess,
) -> None:
    await publish(bars.address, _batches("middle"))
    everything = sorted(await _all_final_change_ids(bars.address))
    resume_after = everything[len(everything) // 2]
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        stream = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(resume_after_change_id=resume_after)
        )
        later = [c for c in everything if c > resume_after]
        got = [(await asyncio.wait_for(stream.read(), 5)).bar.change_id for _ in later]
        stream.cancel()
    assert got == later


async def test_forming_bars_arrive_at_most_every_250ms_per_instrument_and_timeframe(
    bars: ServiceProcess,
) -> None:
    batches = _batches("forming", size=50)
    arrivals: dict[tuple[int, str, int], list[float]] = {}
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        stream = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(
                timeframes=[market_pb2.TIMEFRAME_1M, market_pb2.TIMEFRAME_5M], include_forming=True
            )
        )
        await asyncio.sleep(0.2)

        async def collect() -> None:
            while True:
                response = await stream.read()
                if response is aio.EOF:
                    return
                if not response.bar.final:
                    bar = response.bar
                    key = (bar.exchange, bar.symbol, bar.timeframe)
                    arrivals.setdefault(key, []).append(time.monotonic())

        collecting = asyncio.create_task(collect())
        for batch in batches:  # about 2.5 s of trades, paced
            await publish(bars.address, [batch])
        collecting.cancel()
        stream.cancel()
    usdm = market_pb2.EXCHANGE_BINANCE_USDM
    assert set(arrivals) == {
        (usdm, "BTCUSDT", market_pb2.TIMEFRAME_1M),
        (usdm, "BTCUSDT", market_pb2.TIMEFRAME_5M),
    }
    for times in arrivals.values():
        assert len(times) >= 3
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        # Sent at most every 250 ms; the network may bunch two arrivals by a few ms.
        assert min(gaps) >= 0.2


async def test_slow_subscriber_is_ended_with_resource_exhausted(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    process = await _start_bars(fresh_database_url, fresh_redis_url, subscriber_backlog="100")
    try:
        async with aio.insecure_channel(process.address) as channel:
            stub = bar_service_pb2_grpc.BarServiceStub(channel)
            stream = stub.Subscribe(bar_service_pb2.SubscribeRequest())
            await asyncio.sleep(0.3)  # the server sends nothing before the first bar
            # About 4,500 final bars while this subscriber reads none of them.
            await publish(process.address, xrpeth_batches(fixtures_root() / XRPETH, "slow"))
            status = await asyncio.wait_for(_drain_until_status(stream), timeout=30)
        assert status == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await process.kill()


async def _drain_until_status(
    stream: aio.UnaryStreamCall[
        bar_service_pb2.SubscribeRequest, bar_service_pb2.SubscribeResponse
    ],
) -> grpc.StatusCode:
    """Read what was buffered until the server ends the call; its status code."""
    try:
        while await stream.read() is not aio.EOF:
            pass
    except aio.AioRpcError as error:
        return error.code()
    return await stream.code()


async def test_get_bars_second_read_is_a_cache_hit(bars: ServiceProcess) -> None:
    await publish(bars.address, _batches("cache"))
    request = bar_service_pb2.GetBarsRequest(
        instrument=BTCUSDT, timeframe=market_pb2.TIMEFRAME_1M, limit=5
    )
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        first = await stub.GetBars(request)
        hits_before = await bars.metric("tickmesh_bar_cache_lookups_total", 'result="hit"')
        second = await stub.GetBars(request)
    assert list(second.bars) == list(first.bars)
    assert len(second.bars) == 5
    assert await bars.metric("tickmesh_bar_cache_lookups_total", 'result="hit"') == hits_before + 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            bar_service_pb2.GetBarsRequest(timeframe=market_pb2.TIMEFRAME_1M),
            "instrument: instrument '': exchange is unspecified",
        ),
        (
            bar_service_pb2.GetBarsRequest(
                instrument=market_pb2.Instrument(
                    exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="btc/usdt"
                ),
                timeframe=market_pb2.TIMEFRAME_1M,
            ),
            "instrument: symbol 'btc/usdt' must be",
        ),
        (bar_service_pb2.GetBarsRequest(instrument=BTCUSDT), "timeframe"),
        (
            bar_service_pb2.GetBarsRequest(
                instrument=BTCUSDT, timeframe=market_pb2.TIMEFRAME_1M, limit=5001
            ),
            "limit",
        ),
        (
            bar_service_pb2.GetBarsRequest(
                instrument=BTCUSDT,
                timeframe=market_pb2.TIMEFRAME_1M,
                start_time_ns=10,
                end_time_ns=5,
            ),
            "start_time_ns",
        ),
    ],
)
async def test_get_bars_bad_request_names_the_field(
    bars: ServiceProcess, request_: bar_service_pb2.GetBarsRequest, field: str
) -> None:
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as raised:
            await stub.GetBars(request_)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(field)


async def _read_into(
    stream: aio.UnaryStreamCall[
        bar_service_pb2.SubscribeRequest, bar_service_pb2.SubscribeResponse
    ],
    received: list[market_pb2.Bar],
    sizes: list[int] | None = None,
) -> None:
    async for response in stream:
        if len(response.bars):
            assert not response.HasField("bar")
            received.extend(response.bars)
        else:
            received.append(response.bar)
        if sizes is not None:
            sizes.append(max(1, len(response.bars)))
