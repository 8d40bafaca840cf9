"""Analytics warms an instrument's longer timeframes while idle, before their first close
(prewarm.py), through real bar service and analytics processes.

The bar service holds 2 hours of an instrument's bars before analytics first starts, and
analytics starts past them (its resume point): it meets the instrument at its next 1m final.
It then warms the 5m, 15m, 1h, 4h and 1d streams in the quiet that follows, so the next 5m
close is computed at once, and its indicators equal a computation over every stored 5m bar.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from tickmesh.analytics.bars import bar_from_proto
from tickmesh.analytics.pipeline import InstrumentAnalytics
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import BY_PROTO, NS_PER_MINUTE
from tickmesh.v2 import (
    analytics_pb2,
    analytics_service_pb2,
    analytics_service_pb2_grpc,
    bar_service_pb2,
    bar_service_pb2_grpc,
    market_pb2,
)

from .ingest_helpers import publish
from .mesh_processes import ServiceProcess

INSTRUMENT = InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, "PREWARMUSDT")
START_NS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
CONSUMER = "prewarm-test"
HISTORY_MINUTES = 120  # 24 bars of 5m: enough for SMA 20, RSI 14, Bollinger bands


def _minute(minute: int, sequence: int, close_at_s: int | None = None) -> market_pb2.TradeBatch:
    """Three trades in `minute` (prices drifting minute to minute), and one more at `close_at_s`
    seconds after its open when given (a later trade moves the bar service's clock on)."""
    offsets_s = [5, 25, 45, *([close_at_s] if close_at_s is not None else [])]
    times = [START_NS + minute * NS_PER_MINUTE + s * 1_000_000_000 for s in offsets_s]
    prices = [10_000 + 37 * minute + (-1) ** k * 11 * k for k in range(len(times))]
    return market_pb2.TradeBatch(
        stream_id="prewarm",
        sequence=sequence,
        trades=[
            market_pb2.SymbolTrades(
                exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
                symbol=INSTRUMENT.symbol,
                trade_ids=[minute * 10 + k for k in range(len(times))],
                prices=prices,
                quantities=[3 + (minute + k) % 5 for k in range(len(times))],
                price_scale=2,
                quantity_scale=1,
                sides=[market_pb2.AGGRESSOR_SIDE_BUY] * len(times),
                event_time_ns=times,
                receive_time_ns=times,
            )
        ],
    )


async def _bars(bars: ServiceProcess, timeframe: int) -> list[market_pb2.Bar]:
    async with bars.channel() as channel:
        response = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=INSTRUMENT.to_proto(),
                timeframe=market_pb2.Timeframe.ValueType(timeframe),
                limit=5000,
            )
        )
    return list(response.bars)


async def _until(
    check: Callable[[], Awaitable[bool]], what: str, within_seconds: float = 30.0
) -> None:
    deadline = time.monotonic() + within_seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_seconds} s: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def started_after_history(
    bars: ServiceProcess, fresh_database_url: str, fresh_redis_url: str
) -> AsyncIterator[ServiceProcess]:
    """Analytics started past 2 stored hours (1m bars to minute 119, 5m to [115, 120))."""
    last = HISTORY_MINUTES
    batches = [_minute(m, m + 1) for m in range(last)] + [_minute(last, last + 1, close_at_s=30)]
    await publish(bars.address, batches)

    async def stored() -> bool:
        return len(await _bars(bars, market_pb2.TIMEFRAME_5M)) == HISTORY_MINUTES // 5

    await _until(stored, "the 5m bars to [115, 120) stored")
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute(
            "INSERT INTO analytics_consumer_state (consumer, last_change_id) "
            "SELECT $1, max(change_id) FROM candles",
            CONSUMER,
        )
    finally:
        await conn.close()
    analytics = ServiceProcess(
        "analytics",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_ADDRESSES": bars.address,
            "TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20",
            "TICKMESH_ANALYTICS_CONSUMER_NAME": CONSUMER,
        },
    )
    await analytics.start()
    yield analytics
    await analytics.kill()


async def test_longer_timeframes_are_warmed_before_their_first_close_and_compute_exactly(
    bars: ServiceProcess, started_after_history: ServiceProcess
) -> None:
    analytics = started_after_history

    async def warmups(reason: str) -> float:
        return await analytics.metric("tickmesh_analytics_warmups_total", f'reason="{reason}"')

    # Minute 120 becomes final: analytics meets the instrument (its 1m stream warms as before).
    first = HISTORY_MINUTES
    await publish(bars.address, [_minute(first + 1, first + 2, close_at_s=10)])

    async def prewarmed() -> bool:
        return await warmups("prewarm") == 5

    await _until(prewarmed, "5m, 15m, 1h, 4h and 1d pre-warmed")
    assert await warmups("first_seen") == 1
    # Minutes 121-124 final, and with them the 5m bar [120, 125): computed on the warm stream.
    await publish(bars.address, [_minute(m, m + 2) for m in range(first + 2, first + 5)])
    await publish(bars.address, [_minute(first + 5, first + 7, close_at_s=10)])
    close_open_ns = START_NS + first * NS_PER_MINUTE

    async def closed() -> bool:
        return (await _bars(bars, market_pb2.TIMEFRAME_5M))[-1].open_time_ns == close_open_ns

    await _until(closed, "the 5m bar [120, 125) stored")
    stored_5m = await _bars(bars, market_pb2.TIMEFRAME_5M)
    wanted = INSTRUMENT.to_proto()

    async def indicator_rows() -> list[analytics_pb2.Indicators]:
        async with analytics.channel() as channel:
            response = await analytics_service_pb2_grpc.AnalyticsServiceStub(channel).GetIndicators(
                analytics_service_pb2.GetIndicatorsRequest(
                    instrument=wanted, timeframe=market_pb2.TIMEFRAME_5M, limit=5000
                )
            )
        return list(response.rows)

    async def computed() -> bool:
        return len(await indicator_rows()) == 1

    await _until(computed, "the 5m bar [120, 125) computed")
    assert await warmups("first_seen") == 1
    (row,) = await indicator_rows()
    spec = BY_PROTO[market_pb2.TIMEFRAME_5M]
    fresh = InstrumentAnalytics(INSTRUMENT, spec)
    expected = None
    for bar in stored_5m:
        result = fresh.on_bar(bar_from_proto(bar), bar.open_time_ns + spec.duration_ns)
        expected = result.indicators[-1].to_proto()
    assert row == expected
    assert row.open_time_ns == close_open_ns
    # Computed on the 2 hours of history the pre-warm fetched.
    assert row.HasField("sma_20")
    assert row.HasField("rsi")
