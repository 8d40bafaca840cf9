"""WarmupPrefetch: histories fetched ahead, at most N at once, each handed to the bar it was for."""

from __future__ import annotations

import asyncio

import pytest

from tickmesh.analytics.engine import StreamKey
from tickmesh.analytics.warmup_prefetch import WarmupPrefetch
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2


def _key(index: int) -> StreamKey:
    return (InstrumentId.parse(f"binance_spot:SYM{index}USDT"), market_pb2.TIMEFRAME_1M)


class History:
    """Stored bars by stream, served after a delay, counting the fetches in flight."""

    def __init__(self, fail: StreamKey | None = None) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls: list[tuple[StreamKey, int]] = []
        self._fail = fail

    async def fetch(self, key: StreamKey, before_ns: int) -> list[market_pb2.Bar]:
        self.calls.append((key, before_ns))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if key == self._fail:
                raise ConnectionError(f"no history for {key[0]}")
            return [market_pb2.Bar(symbol=key[0].symbol, open_time_ns=before_ns - 60)]
        finally:
            self.in_flight -= 1


async def test_fetches_run_ahead_bounded_and_each_result_goes_to_its_stream() -> None:
    history = History()
    prefetch = WarmupPrefetch(history.fetch, concurrency=4)
    for index in range(20):
        prefetch.request(_key(index), 1_000 + index)
        prefetch.request(_key(index), 1_000 + index)  # a second bar of the stream: no new fetch
    await asyncio.sleep(0.2)  # all done before any is taken: they ran while "processing" waited
    assert history.most_in_flight == 4
    assert len(history.calls) == 20
    for index in range(20):
        (bar,) = await prefetch.take(_key(index), 1_000 + index)
        assert (bar.symbol, bar.open_time_ns) == (f"SYM{index}USDT", 1_000 + index - 60)
    assert len(prefetch) == 0
    assert len(history.calls) == 20


async def test_a_take_for_another_instant_or_without_a_request_fetches_itself() -> None:
    history = History()
    prefetch = WarmupPrefetch(history.fetch, concurrency=2)
    prefetch.request(_key(1), 5_000)
    (bar,) = await prefetch.take(_key(1), 7_000)
    assert bar.open_time_ns == 7_000 - 60
    (bar,) = await prefetch.take(_key(2), 9_000)
    assert bar.open_time_ns == 9_000 - 60
    assert [before for _, before in history.calls][-2:] == [7_000, 9_000]


async def test_a_failed_fetch_raises_at_take_and_cancel_drops_the_rest() -> None:
    history = History(fail=_key(1))
    prefetch = WarmupPrefetch(history.fetch, concurrency=2)
    for index in range(1, 4):
        prefetch.request(_key(index), 100)
    with pytest.raises(ConnectionError, match="SYM1USDT"):
        await prefetch.take(_key(1), 100)
    await prefetch.cancel()
    assert len(prefetch) == 0
    await asyncio.sleep(0.05)
    assert history.in_flight == 0
