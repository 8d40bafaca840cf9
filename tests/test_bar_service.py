"""The bar service as a process: replays of real Binance trades give Binance's own klines, exactly.

Every comparison is exact: the Decimal of each decimal string GetBars serves equals the Decimal
of Binance's kline string (or of repr() of ccxt's float, for XRPETH); no tolerance anywhere.
"""

from __future__ import annotations

import asyncio
import csv
import json
from decimal import Decimal
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc import aio

from tickmesh.core.decimals import parse_decimal
from tickmesh.core.fixtures import BINANCE_KLINE_FIELDS
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_of
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from .ingest_helpers import capture_batches, fixtures_root, publish, xrpeth_batches
from .mesh_processes import ServiceProcess

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
MINUTE = 60 * NS_PER_S
USDM = market_pb2.EXCHANGE_BINANCE_USDM
SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
KLINE_FIELDS = BINANCE_KLINE_FIELDS

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


async def get_bars(
    address: str, instrument: InstrumentId, timeframe: int, start_ns: int, end_ns: int
) -> dict[int, market_pb2.Bar]:
    """Final bars by open time."""
    async with aio.insecure_channel(address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        response = await stub.GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=instrument.to_proto(),
                timeframe=market_pb2.Timeframe.ValueType(timeframe),
                start_time_ns=start_ns,
                end_time_ns=end_ns,
                limit=5000,
            )
        )
    return {bar.open_time_ns: bar for bar in response.bars}


def futures_klines(path: Path) -> dict[int, dict[str, Decimal]]:
    """Binance Vision 1m klines by open time: every kline field as an exact Decimal."""
    with path.open(newline="") as handle:
        return {
            int(row["open_time"]) * NS_PER_MS: {name: Decimal(row[name]) for name in KLINE_FIELDS}
            for row in csv.DictReader(handle)
        }


def served(bar: market_pb2.Bar) -> dict[str, Decimal]:
    """The kline fields of a served bar: the Decimal of each decimal string, exactly."""
    fields = {name: Decimal(getattr(bar, name)) for name in KLINE_FIELDS if name != "count"}
    fields["count"] = Decimal(bar.trade_count)
    if not bar.HasField("taker_buy_volume"):
        del fields["taker_buy_volume"], fields["taker_buy_quote_volume"]
    return fields


def matches(bar: market_pb2.Bar, kline: dict[str, Decimal]) -> bool:
    """Tell whether a served bar equals a Binance kline exactly, in all nine fields."""
    return served(bar) == kline


def trade_run(symbol: str, ids: list[int], prices: list[str], quantities: list[str],
              times: list[int], exchange: int = SPOT, **fields: object) -> market_pb2.SymbolTrades:  # fmt: skip
    """A run of exact decimal strings, each column at its finest scale."""
    parsed_prices = [parse_decimal(p, "price") for p in prices]
    parsed_quantities = [parse_decimal(q, "quantity") for q in quantities]
    price_scale = max(s for _, s in parsed_prices)
    quantity_scale = max(s for _, s in parsed_quantities)
    return market_pb2.SymbolTrades(
        exchange=market_pb2.Exchange.ValueType(exchange),
        symbol=symbol,
        trade_ids=ids,
        prices=[m * 10 ** (price_scale - s) for m, s in parsed_prices],
        quantities=[m * 10 ** (quantity_scale - s) for m, s in parsed_quantities],
        event_time_ns=times,
        price_scale=price_scale,
        quantity_scale=quantity_scale,
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("day", sorted(FUTURES))
async def test_futures_replay_full_minutes_equal_binance_klines_in_every_field(
    bars: ServiceProcess, day: str
) -> None:
    capture, klines_file, first, last, partial = FUTURES[day]
    folder = fixtures_root() / "binance_futures_um"
    batches = capture_batches(folder / capture, USDM, f"test-{day}")
    assert await publish(bars.address, batches) == batches[-1].sequence
    klines = futures_klines(folder / klines_file)
    full_minutes = range(first * NS_PER_S, last * NS_PER_S + 1, MINUTE)
    instrument = InstrumentId(USDM, "BTCUSDT")
    # A capture ending right at a minute's end (2024-08-08) finalizes that minute only once the
    # quiet symbol's clock passes the allowed lateness: wait for it.
    for _ in range(100):
        built = await get_bars(
            bars.address, instrument, market_pb2.TIMEFRAME_1M, min(klines), max(klines) + MINUTE
        )
        if all(m in built for m in full_minutes):
            break
        await asyncio.sleep(0.1)
    for minute in full_minutes:
        ours = served(built[minute])
        for name in KLINE_FIELDS:
            assert ours[name] == klines[minute][name], (day, minute, name)
    assert [
        m
        for m in partial
        if m * NS_PER_S in built and served(built[m * NS_PER_S]) == klines[m * NS_PER_S]
    ] == []


async def test_xrpeth_aggtrades_give_binance_1m_and_5m_klines_exactly(bars: ServiceProcess) -> None:
    folder = fixtures_root() / "binance_spot" / "freqtrade_XRPETH"
    batches = xrpeth_batches(folder / "XRPETH-aggTrades-2019-10-11_to_2019-10-13.derived.csv", "x")
    assert await publish(bars.address, batches) == batches[-1].sequence
    instrument = InstrumentId(SPOT, "XRPETH")
    for timeframe, name in ((market_pb2.TIMEFRAME_1M, "1m"), (market_pb2.TIMEFRAME_5M, "5m")):
        klines = {
            int(row[0]) * NS_PER_MS: row[1:]
            for row in json.loads((folder / f"XRP_ETH-{name}.json").read_text())
        }
        built = await get_bars(bars.address, instrument, timeframe, min(klines), max(klines))
        # The last kline's bar is still forming when the replay ends; every other one is final.
        for open_time, values in sorted(klines.items())[:-1]:
            bar = built[open_time]
            texts = (bar.open, bar.high, bar.low, bar.close, bar.volume)
            # ccxt's floats: repr gives Binance's short decimal back, and our string reads as
            # exactly that float.
            assert [Decimal(t) for t in texts] == [Decimal(repr(float(v))) for v in values], (
                name,
                open_time,
            )
            assert [float(t) for t in texts] == [float(v) for v in values]


async def test_late_trade_after_final_gives_one_revision_to_subscribers(
    bars: ServiceProcess,
) -> None:
    capture, _, first, _, _ = FUTURES["2024-08-08"]
    folder = fixtures_root() / "binance_futures_um"
    batches = capture_batches(folder / capture, USDM, "late")
    await publish(bars.address, batches)
    minute = first * NS_PER_S
    instrument = InstrumentId(USDM, "BTCUSDT")
    before = (
        await get_bars(bars.address, instrument, market_pb2.TIMEFRAME_1M, minute, minute + MINUTE)
    )[minute]
    higher = str(Decimal(before.high) + 100)
    late = market_pb2.TradeBatch(
        stream_id="late",
        sequence=len(batches) + 1,
        trades=[
            trade_run(
                "BTCUSDT",
                [9_999_999_999],
                [higher],
                ["0.5"],
                [minute + 30 * NS_PER_S],
                exchange=USDM,
                sides=[market_pb2.AGGRESSOR_SIDE_BUY],
            )
        ],
    )
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        stream = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(
                instruments=[instrument.to_proto()], timeframes=[market_pb2.TIMEFRAME_1M]
            )
        )
        await asyncio.sleep(0.2)
        await publish(bars.address, [late])
        revised = (await asyncio.wait_for(stream.read(), timeout=10)).bar
        stream.cancel()
    assert (revised.open_time_ns, revised.revision, revised.final) == (minute, 1, True)
    assert revised.high == higher
    assert Decimal(revised.volume) == Decimal(before.volume) + Decimal("0.5")
    assert Decimal(revised.taker_buy_volume) == Decimal(before.taker_buy_volume) + Decimal("0.5")
    assert Decimal(revised.quote_volume) == Decimal(before.quote_volume) + Decimal(higher) / 2
    assert revised.trade_count == before.trade_count + 1
    stored = await get_bars(
        bars.address, instrument, market_pb2.TIMEFRAME_1M, minute, minute + MINUTE
    )
    assert stored[minute].revision == 1
    assert stored[minute].change_id == revised.change_id
    assert stored[minute].taker_buy_quote_volume == revised.taker_buy_quote_volume


async def test_spot_and_usdm_btcusdt_side_by_side_in_one_service(bars: ServiceProcess) -> None:
    start = 1_700_000_040 * NS_PER_S - (1_700_000_040 * NS_PER_S) % MINUTE
    times = [start + NS_PER_S, start + 2 * NS_PER_S, start + 3 * MINUTE]
    buy = market_pb2.AGGRESSOR_SIDE_BUY
    runs = [
        trade_run("BTCUSDT", [1, 2, 3], ["61700.8", "61701.2", "61702"], ["0.002", "0.1", "1"],
                  times, exchange=USDM, sides=[buy] * 3),
        trade_run("BTCUSDT", [1, 2, 3], ["61712.34", "61713", "61714"], ["0.00012", "0.5", "1"],
                  times, exchange=SPOT, sides=[buy] * 3),
    ]  # fmt: skip
    batch = market_pb2.TradeBatch(stream_id="two-venues", sequence=1, trades=runs)
    assert await publish(bars.address, [batch]) == 1
    usdm = await get_bars(bars.address, InstrumentId(USDM, "BTCUSDT"), 1, start, start + MINUTE)
    spot = await get_bars(bars.address, InstrumentId(SPOT, "BTCUSDT"), 1, start, start + MINUTE)
    assert (usdm[start].open, usdm[start].close, usdm[start].volume) == (
        "61700.8",
        "61701.2",
        "0.102",
    )
    assert (spot[start].open, spot[start].close, spot[start].volume) == (
        "61712.34",
        "61713",
        "0.50012",
    )
    assert usdm[start].quote_volume == "6293.5216"  # 123.4016 + 6170.12
    assert spot[start].quote_volume == "30863.9054808"  # 7.4054808 + 30856.5


BAD_RUNS = [
    (dict(exchange=market_pb2.EXCHANGE_UNSPECIFIED), "batch.trades[1].exchange: unspecified"),
    (dict(symbol="btc usdt"), "batch.trades[1].symbol: symbol 'btc usdt' must be"),
    (dict(price_scale=19), "batch.trades[1].price_scale: 19 is outside 0..18"),
    (dict(quantity_scale=-1), "batch.trades[1].quantity_scale: -1 is outside 0..18"),
    (dict(prices=[10]), "batch.trades[1]: BADUSDT: column prices has shape"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RUNS)
async def test_malformed_run_rejected_naming_field_and_nothing_applied(
    bars: ServiceProcess, change: dict[str, object], message: str
) -> None:
    good = trade_run("GOODUSDT", [1], ["10"], ["1"], [1_700_000_000 * NS_PER_S])
    bad = trade_run("BADUSDT", [1, 2], ["10", "11"], ["1", "1"], [1, 2])
    for name, value in change.items():
        if isinstance(value, list):
            bad.ClearField(name)  # type: ignore[arg-type]
            getattr(bad, name).extend(value)
        else:
            setattr(bad, name, value)
    batch = market_pb2.TradeBatch(stream_id="bad", sequence=1, trades=[good, bad])
    with pytest.raises(aio.AioRpcError) as raised:
        await publish(bars.address, [batch])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(message)
    assert await bars.metric("tickmesh_bars_ingest_batches_total", 'outcome="rejected"') == 1
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        stream = stub.Subscribe(
            bar_service_pb2.SubscribeRequest(include_forming=True, resume_after_change_id=0)
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.read(), timeout=1.0)
        stream.cancel()


@pytest.mark.parametrize(("field", "text"), [("close", "NaN"), ("volume", "1e3"), ("high", "")])
async def test_source_bar_not_plain_decimals_rejected_naming_field(
    bars: ServiceProcess, field: str, text: str
) -> None:
    source = market_pb2.SourceBar(
        exchange=market_pb2.EXCHANGE_YAHOO, symbol="AAPL", timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=1_700_000_040 * NS_PER_S, open="226.5", high="227", low="226.1",
        close="226.79", volume="1200",
    )  # fmt: skip
    setattr(source, field, text)
    batch = market_pb2.TradeBatch(stream_id="yahoo", sequence=1, source_bars=[source])
    with pytest.raises(aio.AioRpcError) as raised:
        await publish(bars.address, [batch])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"batch.source_bars[0].{field}: ")


async def test_suspect_trades_quarantined_exactly_and_the_rest_built(
    bars: ServiceProcess, fresh_database_url: str
) -> None:
    start = 1_700_000_040 * NS_PER_S - (1_700_000_040 * NS_PER_S) % MINUTE
    run = trade_run("QUSDT", [1, 2, 3, 4], ["10.5", "0", "-0.25", "11"], ["1", "1", "1", "-0.001"],
                    [start + 1, start + 2, start + 3, start + 4])  # fmt: skip
    later = trade_run("QUSDT", [5], ["12"], ["2"], [start + 3 * MINUTE])
    batch = market_pb2.TradeBatch(stream_id="q", sequence=1, trades=[run, later])
    assert await publish(bars.address, [batch]) == 1
    connection = await asyncpg.connect(fresh_database_url)
    try:
        rows = await connection.fetch(
            "SELECT trade_id, price, quantity, reason FROM quarantined_trades "
            "WHERE exchange = 'binance_spot' AND symbol = 'QUSDT' ORDER BY trade_id"
        )
    finally:
        await connection.close()
    assert [(r["trade_id"], r["price"], r["quantity"], r["reason"]) for r in rows] == [
        (2, Decimal("0"), Decimal("1"), "invalid_price"),
        (3, Decimal("-0.25"), Decimal("1"), "invalid_price"),
        (4, Decimal("11"), Decimal("-0.001"), "invalid_quantity"),
    ]
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="quarantined"') == 3
    built = await get_bars(bars.address, InstrumentId(SPOT, "QUSDT"), 1, start, start + MINUTE)
    assert (built[start].open, built[start].volume, built[start].trade_count) == ("10.5", "1", 1)


async def test_instrument_of_another_shard_fails_precondition_naming_it(
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
        foreign = next(
            InstrumentId(SPOT, s)
            for s in ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT")
            if shard_of(InstrumentId(SPOT, s), 2) == 1
        )
        batch = market_pb2.TradeBatch(
            stream_id="shard",
            sequence=1,
            trades=[trade_run(foreign.symbol, [1], ["1"], ["1"], [NS_PER_S])],
        )
        with pytest.raises(aio.AioRpcError) as raised:
            await publish(process.address, [batch])
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"instrument {foreign} belongs" in (raised.value.details() or "")
        with pytest.raises(aio.AioRpcError) as raised:
            await get_bars(process.address, foreign, market_pb2.TIMEFRAME_1M, 0, NS_PER_S)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"instrument: {foreign} belongs to bar shard 1 of 2" in (
            raised.value.details() or ""
        )
    finally:
        await process.kill()
