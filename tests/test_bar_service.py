"""The bar service as a process: replays of real Binance trades give Binance's own klines."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from tickmesh.v1 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from .ingest_helpers import capture_batches, fixtures_root, publish, xrpeth_batches
from .mesh_processes import ServiceProcess

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
MINUTE = 60 * NS_PER_S

# Capture, klines, first and last minute README section 1a verified (epoch s), partial minutes.
FUTURES = {
    "2023-04-04": (
        "BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt",
        "BTCUSDT-1m-2023-04-04_2350_to_2023-04-05_0010.csv",
        1_680_652_740,
        1_680_653_100,
        [1_680_652_680, 1_680_653_160],
    ),
    "2024-07-18": (
        "BTCUSDT_ws_trade_2024-07-18T2357_to_2024-07-19T0005.txt",
        "BTCUSDT-1m-2024-07-18_2350_to_2024-07-19_0010.csv",
        1_721_347_080,
        1_721_347_440,
        [1_721_347_020, 1_721_347_500],
    ),
    "2024-08-08": (
        "BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt",
        "BTCUSDT-1m-2024-08-08_2350_to_2024-08-09_0010.csv",
        1_723_161_300,
        1_723_161_540,
        [1_723_161_240],
    ),
}


@pytest.fixture
async def bars(fresh_database_url: str, fresh_redis_url: str) -> AsyncIterator[ServiceProcess]:
    """A bar service on its own empty database."""
    process = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
        },
    )
    await process.start()
    yield process
    await process.kill()


async def get_bars(
    address: str, symbol: str, timeframe: int, start_ns: int, end_ns: int
) -> dict[int, market_pb2.Bar]:
    """Final bars by open time."""
    async with aio.insecure_channel(address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        response = await stub.GetBars(
            bar_service_pb2.GetBarsRequest(
                symbol=symbol,
                timeframe=market_pb2.Timeframe.ValueType(timeframe),
                start_time_ns=start_ns,
                end_time_ns=end_ns,
                limit=5000,
            )
        )
    return {bar.open_time_ns: bar for bar in response.bars}


def futures_klines(path: Path) -> dict[int, tuple[float, ...]]:
    """Binance Vision 1m klines by open time: open, high, low, close, volume, quote volume, count."""
    with path.open(newline="") as handle:
        return {
            int(row["open_time"]) * NS_PER_MS: (
                float(row["open"]),
                float(row["high"]),
                float(row["low"]),
                float(row["close"]),
                float(row["volume"]),
                float(row["quote_volume"]),
                float(row["count"]),
            )
            for row in csv.DictReader(handle)
        }


def matches(bar: market_pb2.Bar, kline: tuple[float, ...]) -> bool:
    """OHLC and trade count exactly, volumes to 1e-9 relative (DESIGN section 3)."""
    exact = (bar.open, bar.high, bar.low, bar.close, bar.trade_count) == (
        kline[0],
        kline[1],
        kline[2],
        kline[3],
        kline[6],
    )
    volume = abs(bar.volume - kline[4]) <= 1e-9 * kline[4]
    quote = abs(bar.quote_volume - kline[5]) <= 1e-9 * kline[5]
    return exact and volume and quote


@pytest.mark.parametrize("day", sorted(FUTURES))
async def test_futures_replay_full_minutes_equal_binance_klines(
    bars: ServiceProcess, day: str
) -> None:
    capture, klines_file, first, last, partial = FUTURES[day]
    folder = fixtures_root() / "binance_futures_um"
    batches = capture_batches(folder / capture, market_pb2.EXCHANGE_BINANCE_USDM, f"test-{day}")
    assert await publish(bars.address, batches) == batches[-1].sequence
    klines = futures_klines(folder / klines_file)
    full_minutes = range(first * NS_PER_S, last * NS_PER_S + 1, MINUTE)
    # A capture ending right at a minute's end (2024-08-08) finalizes that minute only once the
    # quiet symbol's clock passes the allowed lateness: wait for it.
    for _ in range(100):
        built = await get_bars(
            bars.address, "BTCUSDT", market_pb2.TIMEFRAME_1M, min(klines), max(klines) + MINUTE
        )
        if all(m in built for m in full_minutes):
            break
        await asyncio.sleep(0.1)
    assert all(matches(built[m], klines[m]) for m in full_minutes)
    assert [
        m
        for m in partial
        if m * NS_PER_S in built and matches(built[m * NS_PER_S], klines[m * NS_PER_S])
    ] == []


async def test_xrpeth_aggtrades_give_binance_1m_and_5m_klines(bars: ServiceProcess) -> None:
    folder = fixtures_root() / "binance_spot" / "freqtrade_XRPETH"
    batches = xrpeth_batches(folder / "XRPETH-aggTrades-2019-10-11_to_2019-10-13.derived.csv", "x")
    assert await publish(bars.address, batches) == batches[-1].sequence
    for timeframe, name in ((market_pb2.TIMEFRAME_1M, "1m"), (market_pb2.TIMEFRAME_5M, "5m")):
        klines = {
            int(row[0]) * NS_PER_MS: row[1:]
            for row in json.loads((folder / f"XRP_ETH-{name}.json").read_text())
        }
        built = await get_bars(bars.address, "XRPETH", timeframe, min(klines), max(klines))
        # The last kline's bar is still forming when the replay ends; every other one is final.
        for open_time, (o, h, low, c, v) in sorted(klines.items())[:-1]:
            bar = built[open_time]
            assert (bar.open, bar.high, bar.low, bar.close) == (o, h, low, c), (name, open_time)
            assert abs(bar.volume - v) <= 1e-9 * max(v, 1e-12), (name, open_time)


async def test_late_trade_after_final_gives_one_revision_to_subscribers(
    bars: ServiceProcess,
) -> None:
    capture, _, first, _, _ = FUTURES["2024-08-08"]
    folder = fixtures_root() / "binance_futures_um"
    batches = capture_batches(folder / capture, market_pb2.EXCHANGE_BINANCE_USDM, "late")
    await publish(bars.address, batches)
    minute = first * NS_PER_S
    before = (
        await get_bars(bars.address, "BTCUSDT", market_pb2.TIMEFRAME_1M, minute, minute + MINUTE)
    )[minute]
    late = market_pb2.TradeBatch(
        stream_id="late",
        sequence=len(batches) + 1,
        trades=[
            market_pb2.SymbolTrades(
                exchange=market_pb2.EXCHANGE_BINANCE_USDM,
                symbol="BTCUSDT",
                trade_ids=[9_999_999_999],
                prices=[before.high + 100.0],
                quantities=[0.5],
                event_time_ns=[minute + 30 * NS_PER_S],
            )
        ],
    )
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        stream = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(
                symbols=["BTCUSDT"], timeframes=[market_pb2.TIMEFRAME_1M]
            )
        )
        await asyncio.sleep(0.2)
        await publish(bars.address, [late])
        revised = (await asyncio.wait_for(stream.read(), timeout=10)).bar
        stream.cancel()
    assert (revised.open_time_ns, revised.revision, revised.final) == (minute, 1, True)
    assert revised.high == before.high + 100.0
    assert revised.trade_count == before.trade_count + 1
    stored = await get_bars(
        bars.address, "BTCUSDT", market_pb2.TIMEFRAME_1M, minute, minute + MINUTE
    )
    assert stored[minute].revision == 1
    assert stored[minute].change_id == revised.change_id


async def test_malformed_batch_rejected_naming_field_and_nothing_applied(
    bars: ServiceProcess,
) -> None:
    good = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol="GOODUSDT",
        trade_ids=[1],
        prices=[10.0],
        quantities=[1.0],
        event_time_ns=[1_700_000_000 * NS_PER_S],
    )
    bad = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol="BADUSDT",
        trade_ids=[1, 2],
        prices=[10.0],
        quantities=[1.0, 1.0],
        event_time_ns=[1, 2],
    )
    batch = market_pb2.TradeBatch(stream_id="bad", sequence=1, trades=[good, bad])
    with pytest.raises(aio.AioRpcError) as raised:
        await publish(bars.address, [batch])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("batch.trades[1]")
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        stream = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(include_forming=True, resume_after_change_id=0)
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.read(), timeout=1.0)
        stream.cancel()


async def test_symbol_of_another_shard_fails_precondition(
    fresh_database_url: str, fresh_redis_url: str
) -> None:
    process = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": fresh_database_url,
            "TICKMESH_REDIS_URL": fresh_redis_url,
            "TICKMESH_BARS_SHARD_INDEX": "0",
            "TICKMESH_BARS_SHARD_COUNT": "2",
        },
    )
    await process.start()
    try:
        from tickmesh.core.sharding import shard_of

        foreign = next(
            s for s in ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT") if shard_of(s, 2) == 1
        )
        batch = market_pb2.TradeBatch(
            stream_id="shard",
            sequence=1,
            trades=[
                market_pb2.SymbolTrades(
                    exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
                    symbol=foreign,
                    trade_ids=[1],
                    prices=[1.0],
                    quantities=[1.0],
                    event_time_ns=[NS_PER_S],
                )
            ],
        )
        with pytest.raises(aio.AioRpcError) as raised:
            await publish(process.address, [batch])
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await process.kill()
