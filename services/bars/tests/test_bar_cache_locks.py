"""The bar cache reloads different sets side by side, and a commit during a set's reload is not lost."""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as redis
from redis.asyncio.client import Redis

from tickmesh.bars.bar_cache import BarCache
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.v2 import market_pb2

MINUTE_NS = 60_000_000_000


def _instrument() -> InstrumentId:
    # A symbol of its own per test, so sets of earlier runs never answer.
    return InstrumentId.parse(f"simulator:C{secrets.token_hex(4).upper()}")


def _bar(instrument: InstrumentId, minute: int, close: str = "1") -> market_pb2.Bar:
    return market_pb2.Bar(
        exchange=market_pb2.Exchange.ValueType(instrument.exchange),
        symbol=instrument.symbol,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=minute * MINUTE_NS,
        close=close,
        final=True,
    )


async def test_misses_of_different_sets_reload_side_by_side(redis_url: str) -> None:
    client: Redis = redis.Redis.from_url(redis_url)
    cache = BarCache(client, CoreMetrics(), size=100)
    first, second = _instrument(), _instrument()
    second_loading = asyncio.Event()

    async def load(instrument: InstrumentId, timeframe: str, count: int) -> list[market_pb2.Bar]:
        if instrument == first:
            # Finishes only once the other set's reload has started: one lock for every set
            # would hold that reload behind this one, and this wait would time out.
            await asyncio.wait_for(second_loading.wait(), 5)
        else:
            second_loading.set()
        return [_bar(instrument, 1)]

    try:
        async with asyncio.timeout(10):
            await asyncio.gather(
                cache.get_range(first, market_pb2.TIMEFRAME_1M, 0, 10 * MINUTE_NS, 5, load),
                cache.get_range(second, market_pb2.TIMEFRAME_1M, 0, 10 * MINUTE_NS, 5, load),
            )
        for instrument in (first, second):
            # From the set's oldest bar on, the set answers whole: a hit.
            found = await cache.get_range(
                instrument, market_pb2.TIMEFRAME_1M, MINUTE_NS, 10 * MINUTE_NS, 5, load
            )
            assert found is not None
            assert [b.open_time_ns for b in found] == [MINUTE_NS]
    finally:
        await client.aclose()


async def test_a_commit_during_its_sets_reload_is_kept(redis_url: str) -> None:
    client: Redis = redis.Redis.from_url(redis_url)
    cache = BarCache(client, CoreMetrics(), size=100)
    instrument = _instrument()
    loading, release = asyncio.Event(), asyncio.Event()

    async def load(_: InstrumentId, timeframe: str, count: int) -> list[market_pb2.Bar]:
        loading.set()
        await release.wait()
        return [_bar(instrument, 1)]  # read before minute 2 was committed

    try:
        reading = asyncio.create_task(
            cache.get_range(instrument, market_pb2.TIMEFRAME_1M, 0, 10 * MINUTE_NS, 5, load)
        )
        await loading.wait()
        committing = asyncio.create_task(cache.put([_bar(instrument, 2)]))
        await asyncio.sleep(0.05)
        assert not committing.done()  # waits for the reload of its set
        release.set()
        await asyncio.gather(reading, committing)
        found = await cache.get_range(
            instrument, market_pb2.TIMEFRAME_1M, MINUTE_NS, 10 * MINUTE_NS, 5, load
        )
        assert found is not None
        assert [b.open_time_ns for b in found] == [MINUTE_NS, 2 * MINUTE_NS]
    finally:
        await client.aclose()
