"""Analytics history over real gRPC and PostgreSQL: as_of reads around a revision, Replay equal
to the live stream byte for byte, bad input, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import grpc
import numpy as np
import pytest
import redis.asyncio as redis
from grpc import aio
from prometheus_client import CollectorRegistry

from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.analytics_service import AnalyticsServicer
from tickmesh.analytics.bars import bar_from_proto
from tickmesh.analytics.hub import UpdateFilter
from tickmesh.analytics.retention import HistoryRetention
from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import analytics_pb2, analytics_service_pb2_grpc, market_pb2, replay_pb2
from tickmesh.v2 import analytics_service_pb2 as pb

from .service_helpers import (
    ServiceParts,
    analytics_channel,
    decimal_text,
    replace_bar,
    service_parts,
    unique_instrument,
    value,
    walk_bars,
)
from .test_indicators import TOLERANCE, batch

if TYPE_CHECKING:  # the async stub exists only in the generated .pyi
    from tickmesh.v2.analytics_service_pb2_grpc import AnalyticsServiceAsyncStub as Stub

SUBSCRIBE = "/tickmesh.v2.AnalyticsService/Subscribe"
REPLAY = "/tickmesh.v2.AnalyticsService/Replay"
ONE_MINUTE = market_pb2.TIMEFRAME_1M
NS_PER_DAY = 86_400 * 1_000_000_000


@pytest.fixture
async def parts(db_pool: asyncpg.Pool, redis_client: redis.Redis) -> ServiceParts:
    """The service's parts on the run's storage."""
    return service_parts(db_pool, redis_client)


@pytest.fixture
async def channel(parts: ServiceParts) -> AsyncIterator[aio.Channel]:
    """A channel to an AnalyticsService on loopback, registered as __main__ does."""
    servicer = AnalyticsServicer(parts.store, parts.hub, parts.metrics)
    async with analytics_channel(servicer) as served:
        yield served


def stub_of(channel: aio.Channel) -> Stub:
    """The typed stub on a channel."""
    # grpc is untyped here, so mypy cannot pick the stub's aio.Channel overload by itself.
    return cast("Stub", analytics_service_pb2_grpc.AnalyticsServiceStub(channel))


def revised(bar: market_pb2.Bar, change_id: int) -> market_pb2.Bar:
    """Revision 1 of a final bar: a late trade moved its close (still inside high and low)."""
    low, high = value(bar, "low"), value(bar, "high")
    close = decimal_text(low + (high - low) * 0.25, 4)
    return replace_bar(bar, close=close, revision=1, change_id=change_id)


def column(rows: Sequence[analytics_pb2.Indicators], name: str) -> np.ndarray[Any, Any]:
    """One indicator over proto rows, unset as NaN (to line up with TA-Lib's warm-up)."""
    # The stubs type HasField by literal field names; `name` is one of INDICATOR_NAMES.
    present = [row.HasField(name) for row in rows]  # type: ignore[arg-type]
    return np.array(
        [getattr(row, name) if has else np.nan for row, has in zip(rows, present, strict=True)]
    )


def assert_rows_match_talib(
    rows: Sequence[analytics_pb2.Indicators], bars: Sequence[market_pb2.Bar]
) -> None:
    """Each indicator equals TA-Lib's batch function over the bar series, None where it has NaN."""
    assert [row.open_time_ns for row in rows] == [bar.open_time_ns for bar in bars]
    expected = batch([bar_from_proto(bar) for bar in bars])
    for name in INDICATOR_NAMES:
        np.testing.assert_allclose(
            column(rows, name), expected[name], rtol=0, atol=TOLERANCE, err_msg=name
        )


async def indicators_as_of(
    stub: Stub, instrument: InstrumentId, as_of_ns: int | None
) -> list[analytics_pb2.Indicators]:
    """Every indicator row of the instrument's 1m bars, as of `as_of_ns` (None: now)."""
    request = pb.GetIndicatorsRequest(
        instrument=instrument.to_proto(), timeframe=ONE_MINUTE, limit=5000
    )
    if as_of_ns is not None:
        request.as_of_ns = as_of_ns
    return list((await stub.GetIndicators(request)).rows)


async def features_as_of(
    stub: Stub, instrument: InstrumentId, as_of_ns: int
) -> list[analytics_pb2.Features]:
    """Every feature row of the instrument's 1m bars, as of `as_of_ns`."""
    request = pb.GetFeaturesRequest(
        instrument=instrument.to_proto(), timeframe=ONE_MINUTE, limit=5000, as_of_ns=as_of_ns
    )
    return list((await stub.GetFeatures(request)).rows)


async def test_as_of_around_a_recomputation_returns_revision_0_then_revision_1_values(
    parts: ServiceParts, channel: aio.Channel
) -> None:
    stub = stub_of(channel)
    instrument = unique_instrument("H")
    bars = walk_bars(instrument, 60, seed=21)
    subscription = parts.hub.subscribe(UpdateFilter(frozenset({instrument})))
    await parts.feed(bars[:50])
    await parts.feed(bars[50:])
    revision = revised(bars[45], change_id=61)
    await parts.feed([revision])
    updates = [
        pb.AnalyticsServiceSubscribeResponse.FromString(update.message)
        for update in await subscription.next_items()
    ]
    first_commit_ns = updates[0].committed_at_ns
    revision_commit_ns = updates[-1].committed_at_ns
    recomputed = [u for u in updates if u.committed_at_ns == revision_commit_ns]
    # The revised bar and the 14 later bars it recomputed, each with its own bar revision.
    assert [u.indicators.open_time_ns for u in recomputed] == [b.open_time_ns for b in bars[45:]]
    assert [u.bar_revision for u in recomputed] == [1] + [0] * 14

    # Before any data: nothing known, an empty answer (GetQuality: NOT_FOUND, as without data).
    assert await indicators_as_of(stub, instrument, first_commit_ns - 1) == []
    assert await features_as_of(stub, instrument, first_commit_ns - 1) == []
    with pytest.raises(aio.AioRpcError) as before_data:
        await stub.GetQuality(
            pb.GetQualityRequest(instrument=instrument.to_proto(), timeframe=ONE_MINUTE, as_of_ns=0)
        )
    assert before_data.value.code() == grpc.StatusCode.NOT_FOUND
    # After the first commit only its 50 bars are known.
    assert_rows_match_talib(await indicators_as_of(stub, instrument, first_commit_ns), bars[:50])

    series_0 = bars
    series_1 = [*bars[:45], revision, *bars[46:]]
    just_before = await indicators_as_of(stub, instrument, revision_commit_ns - 1)
    just_after = await indicators_as_of(stub, instrument, revision_commit_ns)
    assert_rows_match_talib(just_before, series_0)
    assert_rows_match_talib(just_after, series_1)
    assert just_before[:45] == just_after[:45]
    assert just_before[45].sma_20 != just_after[45].sma_20
    assert await indicators_as_of(stub, instrument, None) == just_after

    features_before = await features_as_of(stub, instrument, revision_commit_ns - 1)
    features_after = await features_as_of(stub, instrument, revision_commit_ns)
    for rows, series in ((features_before, series_0), (features_after, series_1)):
        assert [row.open_time_ns for row in rows] == [bar.open_time_ns for bar in series]
        for index in (45, 46):
            expected = value(series[index], "close") / value(series[index - 1], "close") - 1
            assert rows[index].values["return_1"] == pytest.approx(expected, rel=1e-12)
    assert features_before[:45] == features_after[:45]

    quality = await stub.GetQuality(
        pb.GetQualityRequest(
            instrument=instrument.to_proto(), timeframe=ONE_MINUTE, as_of_ns=revision_commit_ns
        )
    )
    assert quality.quality.symbol == instrument.symbol


async def _subscribed(parts: ServiceParts, count: int) -> None:
    # The stream registers with the hub inside the call; wait for it before producing.
    async with asyncio.timeout(10):
        while parts.hub.subscriber_count < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _logged(parts: ServiceParts, instrument: InstrumentId) -> int:
    count = await parts.store.pool.fetchval(
        "SELECT count(*) FROM analytics_update_log WHERE exchange = $1 AND symbol = $2",
        instrument.venue,
        instrument.symbol,
    )
    return int(count)


async def _replay_raw(channel: aio.Channel, start: replay_pb2.ReplayStart) -> list[bytes]:
    """A whole replay as the raw response bytes, the client half-closing after `start`."""
    replay = channel.stream_stream(
        REPLAY, request_serializer=replay_pb2.ReplayRequest.SerializeToString
    )

    async def requests() -> AsyncIterator[replay_pb2.ReplayRequest]:
        yield replay_pb2.ReplayRequest(start=start)

    call = replay(requests())
    return [cast("bytes", message) async for message in call]


async def test_replay_at_speed_zero_equals_the_recorded_live_stream_byte_for_byte(
    parts: ServiceParts, channel: aio.Channel
) -> None:
    instrument = unique_instrument("R")
    bars = walk_bars(instrument, 40, seed=22)
    subscribe = channel.unary_stream(
        SUBSCRIBE, request_serializer=pb.AnalyticsServiceSubscribeRequest.SerializeToString
    )
    live_call = subscribe(pb.AnalyticsServiceSubscribeRequest(instruments=[instrument.to_proto()]))
    await _subscribed(parts, 1)
    await parts.feed(bars[:30])
    await parts.feed(bars[30:35])
    await parts.feed([revised(bars[32], change_id=41)])
    await parts.feed(bars[35:])
    await parts.feed([revised(bars[20], change_id=42)])
    logged = await _logged(parts, instrument)
    async with asyncio.timeout(10):
        live = [cast("bytes", await live_call.read()) for _ in range(logged)]
    live_call.cancel()

    everything = replay_pb2.ReplayStart(instruments=[instrument.to_proto()], speed=0)
    assert await _replay_raw(channel, everything) == live
    decoded = [pb.AnalyticsServiceSubscribeResponse.FromString(message) for message in live]
    # Revision 1 of bar 32, of bar 20, then bar 32 again as bar 20's revision recomputes it.
    revised_times = [m.indicators.open_time_ns for m in decoded if m.bar_revision == 1]
    assert revised_times == [bars[32].open_time_ns, bars[20].open_time_ns, bars[32].open_time_ns]
    # From a commit on: exactly the live updates committed from then.
    third_commit_ns = sorted({m.committed_at_ns for m in decoded})[2]
    from_third = replay_pb2.ReplayStart(
        instruments=[instrument.to_proto()], start_time_ns=third_commit_ns, speed=0
    )
    expected = [
        m for m, d in zip(live, decoded, strict=True) if d.committed_at_ns >= third_commit_ns
    ]
    assert await _replay_raw(channel, from_third) == expected
    other_timeframe = replay_pb2.ReplayStart(
        instruments=[instrument.to_proto()], timeframes=[market_pb2.TIMEFRAME_5M], speed=0
    )
    assert await _replay_raw(channel, other_timeframe) == []


GOOD = market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="BTCUSDT")


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "must open with a `start`"),
        ([replay_pb2.ReplayRequest(pause=replay_pb2.ReplayPause())], "first message"),
        (
            [
                replay_pb2.ReplayRequest(
                    start=replay_pb2.ReplayStart(start_time_ns=5, end_time_ns=5)
                )
            ],
            "must be before end_time_ns",
        ),
        ([replay_pb2.ReplayRequest(start=replay_pb2.ReplayStart(speed=-1))], "speed"),
        ([replay_pb2.ReplayRequest(start=replay_pb2.ReplayStart(max_batch=2))], "max_batch"),
        (
            [replay_pb2.ReplayRequest(start=replay_pb2.ReplayStart(timeframes=[99]))],  # type: ignore[list-item]
            "timeframe",
        ),
        (
            [
                replay_pb2.ReplayRequest(
                    start=replay_pb2.ReplayStart(
                        instruments=[GOOD, market_pb2.Instrument(symbol="BTCUSDT")]
                    )
                )
            ],
            "start.instruments[1]",
        ),
    ],
)
async def test_replay_bad_input_is_invalid_argument(
    channel: aio.Channel, requests: list[replay_pb2.ReplayRequest], message: str
) -> None:
    async def stream() -> AsyncIterator[replay_pb2.ReplayRequest]:
        for request in requests:
            yield request

    call = stub_of(channel).Replay(stream())
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")


async def test_negative_as_of_is_invalid_argument(channel: aio.Channel) -> None:
    stub = stub_of(channel)
    calls = [
        stub.GetIndicators(
            pb.GetIndicatorsRequest(instrument=GOOD, timeframe=ONE_MINUTE, as_of_ns=-1)
        ),
        stub.GetFeatures(pb.GetFeaturesRequest(instrument=GOOD, timeframe=ONE_MINUTE, as_of_ns=-1)),
        stub.GetQuality(pb.GetQualityRequest(instrument=GOOD, timeframe=ONE_MINUTE, as_of_ns=-1)),
    ]
    for call in calls:
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "as_of_ns" in (caught.value.details() or "")


async def _versions(parts: ServiceParts, table: str, instrument: InstrumentId) -> int:
    count = await parts.store.pool.fetchval(
        f"SELECT count(*) FROM {table} WHERE exchange = $1 AND symbol = $2",
        instrument.venue,
        instrument.symbol,
    )
    return int(count)


async def test_retention_deletes_superseded_versions_and_the_log_past_the_horizon(
    parts: ServiceParts, channel: aio.Channel
) -> None:
    instrument = unique_instrument("K")
    # Bars of 2030, stored now: a horizon between the two keeps every bar's current version.
    later_ns = 4 * 365 * NS_PER_DAY
    bars = [
        replace_bar(bar, open_time_ns=bar.open_time_ns + later_ns)
        for bar in walk_bars(instrument, 30, seed=23)
    ]
    await parts.feed(bars)
    await parts.feed([revised(bars[25], change_id=31)])
    latest = await indicators_as_of(stub_of(channel), instrument, None)
    assert await _versions(parts, "indicator_versions", instrument) == 35

    forever = HistoryRetention(parts.store.pool, parts.metrics, days=0, interval_seconds=0.01)
    assert await forever.prune_once() == {}
    await forever.run()  # returns at once: nothing to do, ever
    assert await _logged(parts, instrument) == 35

    # Two days from now, a one-day horizon lies after both commits and before the bars.
    retention = HistoryRetention(
        parts.store.pool,
        parts.metrics,
        days=1,
        interval_seconds=0.05,
        clock_ns=lambda: time.time_ns() + 2 * NS_PER_DAY,
    )
    task = asyncio.create_task(retention.run())
    try:
        async with asyncio.timeout(10):
            while await _logged(parts, instrument):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert await _versions(parts, "indicator_versions", instrument) == 30
    assert await _versions(parts, "feature_versions", instrument) == 30
    now_ns = time.time_ns()
    assert await indicators_as_of(stub_of(channel), instrument, now_ns) == latest


async def test_replay_to_a_client_that_stops_reading_stops_reading_the_log(
    parts: ServiceParts,
) -> None:
    instrument = unique_instrument("F")
    # 1,000 logged updates of 64 KiB (64 MB in all), far more than the transport buffers.
    await parts.store.pool.executemany(
        "INSERT INTO analytics_update_log (committed_at, exchange, symbol, timeframe, message) "
        "VALUES (now(), $1, $2, '1m', $3)",
        [
            (instrument.venue, instrument.symbol, bytes([index % 256]) * 65_536)
            for index in range(1000)
        ],
    )
    registry = CollectorRegistry()
    servicer = AnalyticsServicer(
        parts.store, parts.hub, AnalyticsMetrics(registry), replay_page_size=10
    )

    def pages() -> float:
        return registry.get_sample_value("tickmesh_analytics_replay_pages_total") or 0.0

    async with analytics_channel(servicer) as channel:
        replay = channel.stream_stream(
            REPLAY, request_serializer=replay_pb2.ReplayRequest.SerializeToString
        )

        async def requests() -> AsyncIterator[replay_pb2.ReplayRequest]:
            yield replay_pb2.ReplayRequest(
                start=replay_pb2.ReplayStart(instruments=[instrument.to_proto()], speed=0)
            )

        call = replay(requests())
        await call.read()
        await asyncio.sleep(1.0)  # the client reads nothing meanwhile
        stalled_pages = pages()
        assert stalled_pages < 100, stalled_pages  # 100 pages hold the whole log
        await asyncio.sleep(0.5)
        assert pages() == stalled_pages  # paused, not creeping on
        rest = [message async for message in call]
    assert len(rest) == 999
    assert pages() >= 100


async def test_replay_at_speed_one_keeps_the_gaps_between_commits(
    parts: ServiceParts, channel: aio.Channel
) -> None:
    instrument = unique_instrument("P")
    bars = walk_bars(instrument, 4, seed=24)
    await parts.feed(bars[:2])
    await asyncio.sleep(0.4)
    await parts.feed(bars[2:])
    replay = channel.stream_stream(
        REPLAY, request_serializer=replay_pb2.ReplayRequest.SerializeToString
    )

    async def requests() -> AsyncIterator[replay_pb2.ReplayRequest]:
        yield replay_pb2.ReplayRequest(
            start=replay_pb2.ReplayStart(instruments=[instrument.to_proto()], speed=1)
        )

    arrivals: list[float] = []
    async for _message in replay(requests()):
        arrivals.append(time.monotonic())
    assert len(arrivals) == 4
    # Real time: the second commit's updates come the commits' gap (0.4 s or more) later.
    assert arrivals[2] - arrivals[1] >= 0.35
    assert arrivals[1] - arrivals[0] < 0.3  # one commit: sent back to back
