"""GetQuality over real gRPC and PostgreSQL: revisions, staleness on the stream's clock, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import pytest
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.analytics_service import AnalyticsServicer
from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.results import Quality
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import analytics_service_pb2 as pb
from tickmesh.v2 import market_pb2

from .service_helpers import (
    NS_PER_MINUTE,
    ServiceParts,
    decimal_text,
    replace_bar,
    serve_analytics,
    service_parts,
    unique_instrument,
    value,
    walk_bars,
)

if TYPE_CHECKING:  # the async stub exists only in the generated .pyi
    from tickmesh.v2.analytics_service_pb2_grpc import AnalyticsServiceAsyncStub as Stub

RECEIVED_NS = 1_790_000_000 * 1_000_000_000  # the wall clock when the replay is consumed


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
def clock() -> Clock:
    """The wall clock of both the engine (receiving bars) and the servicer (judging them)."""
    return Clock(RECEIVED_NS)


@pytest.fixture
async def parts(db_pool: asyncpg.Pool, redis_client: redis.Redis, clock: Clock) -> ServiceParts:
    """The service's parts on the run's storage, on the test's clock."""
    return service_parts(db_pool, redis_client, clock_ns=clock)


@pytest.fixture
async def stub(parts: ServiceParts, clock: Clock) -> AsyncIterator[Stub]:
    """A client of an AnalyticsService whose wall clock is the test's."""
    async with serve_analytics(
        AnalyticsServicer(parts.store, parts.hub, parts.metrics, clock_ns=clock)
    ) as served:
        yield served


def proto_bars(instrument: InstrumentId, bars: list[BarInput]) -> list[market_pb2.Bar]:
    """Final 1m proto bars of `bars`, with growing change ids.

    The klines' values have at most 8 decimals, so 10 places give their exact decimal back.
    """
    return [
        market_pb2.Bar(
            symbol=instrument.symbol,
            exchange=market_pb2.Exchange.ValueType(instrument.exchange),
            timeframe=market_pb2.TIMEFRAME_1M,
            open_time_ns=bar.open_time_ns,
            open=decimal_text(bar.open, 10),
            high=decimal_text(bar.high, 10),
            low=decimal_text(bar.low, 10),
            close=decimal_text(bar.close, 10),
            volume=decimal_text(bar.volume, 10),
            final=True,
            change_id=index + 1,
        )
        for index, bar in enumerate(bars)
    ]


async def test_fixture_replay_is_not_stale_until_its_bars_stop_arriving(
    parts: ServiceParts, stub: Stub, clock: Clock, xrpeth_minute_bars: list[BarInput]
) -> None:
    instrument = unique_instrument("XRP", market_pb2.EXCHANGE_BINANCE_SPOT)
    replayed = proto_bars(instrument, xrpeth_minute_bars[-400:])  # Binance's own 2019 klines
    await parts.feed(replayed)
    request = pb.GetQualityRequest(
        instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M
    )

    clock.now_ns = RECEIVED_NS + 2 * NS_PER_MINUTE  # years after the data, just after the replay
    fresh = (await stub.GetQuality(request)).quality
    assert fresh.time_ns == replayed[-1].open_time_ns + NS_PER_MINUTE
    assert "stale" in fresh.checks_passed

    clock.now_ns = RECEIVED_NS + 3 * NS_PER_MINUTE + 1  # three 1m bars of quiet
    quiet = (await stub.GetQuality(request)).quality
    assert "stale" in quiet.checks_failed
    assert quiet.score < fresh.score
    assert [a.check for a in quiet.anomalies if a.time_ns > fresh.time_ns] == ["stale"]

    # The stream resumes: the next bar is fresh again.
    next_bar = market_pb2.Bar()
    next_bar.CopyFrom(replayed[-1])
    next_bar.open_time_ns += NS_PER_MINUTE
    next_bar.change_id += 1
    await parts.feed([next_bar])
    assert "stale" in (await stub.GetQuality(request)).quality.checks_passed


async def test_live_stream_that_stops_turns_stale(
    parts: ServiceParts, stub: Stub, clock: Clock, xrpeth_minute_bars: list[BarInput]
) -> None:
    instrument = unique_instrument("LIVE")
    # Bars that closed just before they were received: a live feed.
    start = RECEIVED_NS - RECEIVED_NS % NS_PER_MINUTE - 60 * NS_PER_MINUTE
    live = [
        BarInput(start + i * NS_PER_MINUTE, b.open, b.high, b.low, b.close, b.volume)
        for i, b in enumerate(xrpeth_minute_bars[:60])
    ]
    await parts.feed(proto_bars(instrument, live))
    request = pb.GetQualityRequest(
        instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M
    )
    assert "stale" in (await stub.GetQuality(request)).quality.checks_passed
    clock.now_ns += 10 * NS_PER_MINUTE
    assert "stale" in (await stub.GetQuality(request)).quality.checks_failed


def test_quality_metrics_export_score_failed_checks_and_receive_time() -> None:
    registry = CollectorRegistry()
    metrics = AnalyticsMetrics(registry)
    quality = Quality(
        InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT"),
        market_pb2.TIMEFRAME_5M,
        1_000,
        0.75,
        checks_passed=("gaps",),
        checks_failed=("duplicates", "price_spikes"),
        received_ns=1_700_000_000_500_000_000,
    )
    metrics.observe_quality(quality)
    metrics.observe_quality(quality)
    labels = {"exchange": "binance_usdm", "symbol": "BTCUSDT", "timeframe": "5m"}
    assert registry.get_sample_value("tickmesh_analytics_quality_score", labels) == 0.75
    failed = "tickmesh_analytics_quality_checks_failed_total"
    assert registry.get_sample_value(failed, {"check": "duplicates"}) == 2.0
    assert registry.get_sample_value(failed, {"check": "gaps"}) is None
    received = "tickmesh_analytics_bar_received_timestamp_seconds"
    assert registry.get_sample_value(received, labels) == pytest.approx(1_700_000_000.5)


async def test_revision_clearing_a_spike_clears_it_from_get_quality(
    parts: ServiceParts, stub: Stub
) -> None:
    instrument = unique_instrument("REV")
    bars = walk_bars(instrument, 100, seed=21)
    jump = decimal_text(value(bars[80], "close") * 1.5, 4)
    spiked = replace_bar(bars[80], close=jump, high=jump)
    await parts.feed([*bars[:80], spiked, *bars[81:]])
    request = pb.GetQualityRequest(
        instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M
    )
    before = (await stub.GetQuality(request)).quality
    assert "price_spikes" in before.checks_failed
    assert bars[80].open_time_ns in {a.time_ns for a in before.anomalies}

    revision = replace_bar(bars[80], revision=1, change_id=bars[-1].change_id + 1)
    await parts.feed([revision])
    after = (await stub.GetQuality(request)).quality
    assert after.time_ns == before.time_ns  # the same assessment row, recomputed
    assert "price_spikes" in after.checks_passed
    assert not [a for a in after.anomalies if a.check == "price_spikes"]
    assert after.score == 1.0
