"""PreWarmer: which longer timeframes to fetch after an instrument's 1m final, up to which open
time, a few at a time, and which finished fetches are left for the consumer to apply."""

from __future__ import annotations

import asyncio

from tickmesh.analytics.engine import StreamKey
from tickmesh.analytics.prewarm import PreWarmer
from tickmesh.analytics.warmup_prefetch import WarmupPrefetch
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import NS_PER_MINUTE
from tickmesh.v2 import market_pb2

BTC = InstrumentId.parse("binance_spot:BTCUSDT")
# 2026-01-01 13:47 UTC: a minute inside every longer bucket, not at its start.
MINUTE_NS = 1_767_275_220_000_000_000


class Fetches:
    """Recorded fetches, each answered when released."""

    def __init__(self) -> None:
        self.calls: list[tuple[StreamKey, int]] = []
        self.release = asyncio.Event()

    async def fetch(self, key: StreamKey, before_ns: int) -> list[market_pb2.Bar]:
        self.calls.append((key, before_ns))
        await self.release.wait()
        return [market_pb2.Bar(symbol=key[0].symbol, open_time_ns=before_ns - NS_PER_MINUTE)]


async def test_a_minute_queues_the_longer_timeframes_not_warm_up_to_their_buckets() -> None:
    fetches = Fetches()
    prefetch = WarmupPrefetch(fetches.fetch, concurrency=8)
    warm = {(BTC, market_pb2.TIMEFRAME_15M)}
    prewarm = PreWarmer(prefetch, warm.__contains__, in_flight=2)
    prewarm.note_minute((BTC, market_pb2.TIMEFRAME_5M), MINUTE_NS)  # not a minute: nothing
    assert not prewarm.busy
    prewarm.note_minute((BTC, market_pb2.TIMEFRAME_1M), MINUTE_NS - NS_PER_MINUTE)
    prewarm.note_minute((BTC, market_pb2.TIMEFRAME_1M), MINUTE_NS)  # the newer minute counts
    prewarm.top_up()
    await asyncio.sleep(0)
    # Two at a time; 15m is warm already.
    assert fetches.calls == [
        ((BTC, market_pb2.TIMEFRAME_5M), MINUTE_NS - 2 * NS_PER_MINUTE),  # 13:45
        ((BTC, market_pb2.TIMEFRAME_1H), MINUTE_NS - 47 * NS_PER_MINUTE),  # 13:00
    ]
    assert prewarm.finished() == []
    fetches.release.set()
    await prewarm.changed.wait()
    await asyncio.sleep(0)
    assert prewarm.finished() == [
        ((BTC, market_pb2.TIMEFRAME_5M), MINUTE_NS - 2 * NS_PER_MINUTE),
        ((BTC, market_pb2.TIMEFRAME_1H), MINUTE_NS - 47 * NS_PER_MINUTE),
    ]
    (bar,) = await prefetch.take((BTC, market_pb2.TIMEFRAME_5M), MINUTE_NS - 2 * NS_PER_MINUTE)
    assert bar.open_time_ns == MINUTE_NS - 3 * NS_PER_MINUTE
    prefetch.discard((BTC, market_pb2.TIMEFRAME_1H))
    prewarm.top_up()
    await asyncio.sleep(0.01)
    assert fetches.calls[2:] == [
        ((BTC, market_pb2.TIMEFRAME_4H), MINUTE_NS - 107 * NS_PER_MINUTE),  # 12:00
        ((BTC, market_pb2.TIMEFRAME_1D), MINUTE_NS - 827 * NS_PER_MINUTE),  # 00:00
    ]


async def test_a_stream_whose_first_bar_took_its_fetch_is_not_left_to_apply() -> None:
    fetches = Fetches()
    fetches.release.set()
    prefetch = WarmupPrefetch(fetches.fetch, concurrency=8)
    warm: set[StreamKey] = set()
    prewarm = PreWarmer(prefetch, warm.__contains__, in_flight=5)
    prewarm.note_minute((BTC, market_pb2.TIMEFRAME_1M), MINUTE_NS)
    prewarm.top_up()
    five = (BTC, market_pb2.TIMEFRAME_5M)
    # The 5m stream's first bar arrived first and the consumer warmed it with this fetch.
    await prefetch.take(five, MINUTE_NS - 2 * NS_PER_MINUTE)
    warm.add(five)
    await asyncio.sleep(0.01)
    finished = dict(prewarm.finished())
    assert five not in finished
    assert len(finished) == 4
    assert not prewarm.busy
    # A warm stream is not queued again by later minutes.
    prewarm.note_minute((BTC, market_pb2.TIMEFRAME_1M), MINUTE_NS + NS_PER_MINUTE)
    prewarm.top_up()
    await asyncio.sleep(0.01)
    assert [key for key, _ in fetches.calls].count(five) == 1


async def test_reset_forgets_queued_and_running_prewarms() -> None:
    fetches = Fetches()
    prefetch = WarmupPrefetch(fetches.fetch, concurrency=8)
    prewarm = PreWarmer(prefetch, lambda _: False, in_flight=1)
    prewarm.note_minute((BTC, market_pb2.TIMEFRAME_1M), MINUTE_NS)
    prewarm.top_up()
    assert prewarm.busy
    await prefetch.cancel()
    prewarm.reset()
    assert not prewarm.busy
    assert prewarm.finished() == []
