"""SIGKILL the bar service at random points of a replay: the finals equal an uninterrupted run."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import grpc
import redis.asyncio as redis

from tickmesh.core.timeframes import TIMEFRAMES
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from .grpc_helpers import dial
from .ingest_helpers import capture_batches, fixtures_root, publish_until_acked
from .mesh_processes import ServiceProcess

CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"
KILLS = 10
# 23:58 .. 00:06: the capture's nine minutes, the first and last partial.
MINUTES = 9
BarKey = tuple[int, int]
# Exact decimal strings (open, high, low, close, volume, quote volume, taker-buy volumes), then
# trade count and revision: a double-counted or lost trade changes them, rounding never does.
BarValues = tuple[str, str, str, str, str, str, str, str, int, int]


async def final_bars(
    address: str, credentials: grpc.ChannelCredentials | None = None
) -> dict[BarKey, BarValues]:
    """Every final bar of BTCUSDT on every timeframe, by (timeframe, open time)."""
    found: dict[BarKey, BarValues] = {}
    async with dial(address, credentials) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        for timeframe in TIMEFRAMES:
            response = await stub.GetBars(
                bar_service_pb2.GetBarsRequest(
                    instrument=market_pb2.Instrument(
                        exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="BTCUSDT"
                    ),
                    timeframe=market_pb2.Timeframe.ValueType(timeframe.proto),
                    limit=5000,
                )
            )
            for bar in response.bars:
                found[(timeframe.proto, bar.open_time_ns)] = (
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                    bar.volume,
                    bar.quote_volume,
                    bar.taker_buy_volume,
                    bar.taker_buy_quote_volume,
                    bar.trade_count,
                    bar.revision,
                )
    return found


async def settled_bars(
    address: str, credentials: grpc.ChannelCredentials | None = None
) -> dict[BarKey, BarValues]:
    """The final bars once the capture's last minute is final (the quiet symbol's clock moves on)."""
    for _ in range(100):
        current = await final_bars(address, credentials)
        if sum(1 for timeframe, _ in current if timeframe == market_pb2.TIMEFRAME_1M) == MINUTES:
            return current
        await asyncio.sleep(0.2)
    raise TimeoutError("the capture's last minute never became final")


async def test_bar_service_killed_ten_times_loses_and_doubles_nothing(
    make_fresh_database: Callable[[], Awaitable[str]], fresh_redis_url: str
) -> None:
    batches = capture_batches(
        fixtures_root() / CAPTURE, market_pb2.EXCHANGE_BINANCE_USDM, "chaos", batch_size=100
    )
    results = []
    for kills in (0, KILLS):
        database_url = await make_fresh_database()
        # Each run caches its own bars: the second must not read the first's.
        cache = redis.Redis.from_url(fresh_redis_url)
        await cache.flushdb()
        await cache.aclose()
        bars = ServiceProcess(
            "bars",
            {
                "TICKMESH_DATABASE_URL": database_url,
                "TICKMESH_REDIS_URL": fresh_redis_url,
                "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
            },
        )
        await bars.start()
        publisher = asyncio.create_task(publish_until_acked(bars.address, batches, 0.005))
        chooser = random.Random(kills)
        for _ in range(kills):
            await asyncio.sleep(chooser.uniform(0.05, 0.4))
            await bars.kill()
            await bars.start()
        assert await asyncio.wait_for(publisher, timeout=120) == batches[-1].sequence
        results.append(await settled_bars(bars.address))
        await bars.kill()
    uninterrupted, killed = results
    assert killed == uninterrupted
