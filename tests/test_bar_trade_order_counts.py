"""The bar service process counts injected duplicate and out-of-order trades per bar, and keeps them.

A real Binance capture goes in through IngestService.Publish with some trades sent twice and
some adjacent pairs swapped inside their batch. GetBars must report exactly what was injected
per minute (5m = sum of its minutes), the bars must still equal Binance's klines, and the counts
must come back from PostgreSQL after the service is killed, restarted and its cache emptied.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import redis.asyncio as redis

from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2

from .ingest_helpers import capture_batches, fixtures_root, publish
from .mesh_processes import ServiceProcess
from .test_bar_service import FUTURES, MINUTE, NS_PER_S, futures_klines, get_bars, matches

DAY = "2024-07-18"
BTCUSDT = InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT")


def _take(run: market_pb2.SymbolTrades, order: list[int]) -> market_pb2.SymbolTrades:
    """The run's trades in `order` (positions may repeat); optional empty columns stay empty."""
    size = len(run.trade_ids)
    picked = market_pb2.SymbolTrades(
        exchange=run.exchange,
        symbol=run.symbol,
        price_scale=run.price_scale,
        quantity_scale=run.quantity_scale,
    )
    for name in (
        "trade_ids",
        "prices",
        "quantities",
        "sides",
        "event_time_ns",
        "receive_time_ns",
        "types",
        "trade_counts",
    ):
        column = list(getattr(run, name))
        if len(column) == size:
            getattr(picked, name).extend(column[i] for i in order)
    return picked


def inject_faults(
    batches: list[market_pb2.TradeBatch], seed: int
) -> tuple[list[market_pb2.TradeBatch], Counter[int], Counter[int]]:
    """Send ~1% of each batch's trades twice (at the batch's end) and swap ~1% of adjacent pairs.

    Return the batches and the injected (duplicates, out-of-order trades) per minute. Within a
    batch of an in-order capture every minute is still forming, so each injection counts: a
    swapped pair makes the earlier trade arrive after the later one; a copy is one duplicate
    in the minute of its event time.
    """
    rng = np.random.default_rng(seed)
    duplicates: Counter[int] = Counter()
    out_of_order: Counter[int] = Counter()
    faulty = []
    for batch in batches:
        (run,) = batch.trades
        size = len(run.trade_ids)
        order = list(range(size))
        for pair in rng.choice(size // 2, size // 200, replace=False).tolist():
            first = 2 * pair
            order[first], order[first + 1] = first + 1, first
            time_ns = run.event_time_ns[first]
            out_of_order[time_ns - time_ns % MINUTE] += 1
        copies = rng.choice(size, size // 100, replace=False).tolist()
        for index in copies:
            time_ns = run.event_time_ns[index]
            duplicates[time_ns - time_ns % MINUTE] += 1
        faulty.append(
            market_pb2.TradeBatch(
                stream_id=batch.stream_id,
                sequence=batch.sequence,
                trades=[_take(run, order + copies)],
            )
        )
    return faulty, duplicates, out_of_order


async def test_injected_duplicates_and_reordering_counted_per_bar_and_kept_over_restart(
    bars: ServiceProcess, fresh_redis_url: str
) -> None:
    capture, klines_file, first, last, _ = FUTURES[DAY]
    folder = fixtures_root() / "binance_futures_um"
    clean = capture_batches(folder / capture, market_pb2.EXCHANGE_BINANCE_USDM, "faults")
    batches, duplicates, out_of_order = inject_faults(clean, seed=18)
    assert sum(duplicates.values()) > 50
    assert sum(out_of_order.values()) > 20
    assert await publish(bars.address, batches) == batches[-1].sequence
    # The capture's last minute stays forming (a minute of quiet symbol clock): compare up to it.
    last_final = last * NS_PER_S
    start, end = min(*duplicates, *out_of_order), last_final + MINUTE
    duplicates = Counter({m: n for m, n in duplicates.items() if m <= last_final})
    out_of_order = Counter({m: n for m, n in out_of_order.items() if m <= last_final})

    async def final_minutes() -> dict[int, market_pb2.Bar]:
        for _ in range(100):
            built = await get_bars(bars.address, BTCUSDT, market_pb2.TIMEFRAME_1M, start, end)
            if last_final in built:
                return built
            await asyncio.sleep(0.1)
        raise AssertionError("the last full minute never became final")

    minutes = await final_minutes()
    assert {m: b.duplicate_trades for m, b in minutes.items() if b.duplicate_trades} == dict(
        duplicates
    )
    assert {m: b.out_of_order_trades for m, b in minutes.items() if b.out_of_order_trades} == dict(
        out_of_order
    )
    klines = futures_klines(folder / klines_file)
    for minute in range(first * NS_PER_S, last * NS_PER_S + 1, MINUTE):
        assert matches(minutes[minute], klines[minute]), minute
    five = await get_bars(bars.address, BTCUSDT, market_pb2.TIMEFRAME_5M, start, end)
    assert five
    for open_time, bar in five.items():
        inside = [b for m, b in minutes.items() if open_time <= m < open_time + 5 * MINUTE]
        assert bar.duplicate_trades == sum(b.duplicate_trades for b in inside)
        assert bar.out_of_order_trades == sum(b.out_of_order_trades for b in inside)

    # Persisted, not only cached: kill, empty Redis, restart, read back from PostgreSQL.
    await bars.kill()
    client = redis.Redis.from_url(fresh_redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    await bars.start()
    again = await get_bars(bars.address, BTCUSDT, market_pb2.TIMEFRAME_1M, start, end)
    assert {m: (b.duplicate_trades, b.out_of_order_trades) for m, b in again.items()} == {
        m: (b.duplicate_trades, b.out_of_order_trades) for m, b in minutes.items()
    }
    five_again = await get_bars(bars.address, BTCUSDT, market_pb2.TIMEFRAME_5M, start, end)
    assert {m: b.duplicate_trades for m, b in five_again.items()} == {
        m: b.duplicate_trades for m, b in five.items()
    }
