"""Bar revision history through a real bar service: GetBars as_of and BarService.Replay.

Real 2024-08-08 USD-M captures play through IngestService.Publish into `python -m
tickmesh.bars` on its own database; late trades then revise bars that were final. The live
Subscribe stream is recorded as raw bytes and compared with a Replay of the same range.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import pytest
from grpc import aio

from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2, replay_pb2

from .ingest_helpers import capture_batches, fixtures_root, mantissas, publish
from .mesh_processes import ServiceProcess

NS_PER_S = 1_000_000_000
MINUTE = 60 * NS_PER_S
USDM = market_pb2.EXCHANGE_BINANCE_USDM
BTC = InstrumentId(USDM, "BTCUSDT")
ETH = InstrumentId(USDM, "ETHUSDT")
CAPTURES = {
    "BTCUSDT": "BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt",
    "ETHUSDT": "ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt",
}
FIRST_FULL_MINUTE = 1_723_161_300 * NS_PER_S  # 2024-08-08 23:55, final once 23:56 trades come
REPLAY = "/tickmesh.v2.BarService/Replay"
SUBSCRIBE = "/tickmesh.v2.BarService/Subscribe"


def late_trade(
    symbol: str, stream_id: str, sequence: int, trade_id: int, price: str, time_ns: int
) -> market_pb2.TradeBatch:
    """One buy of 0.5 at `price` inside a minute that is final already."""
    prices, price_scale = mantissas([price], "price")
    quantities, quantity_scale = mantissas(["0.5"], "quantity")
    run = market_pb2.SymbolTrades(
        exchange=USDM,
        symbol=symbol,
        trade_ids=[trade_id],
        prices=prices,
        quantities=quantities,
        price_scale=price_scale,
        quantity_scale=quantity_scale,
        event_time_ns=[time_ns],
        sides=[market_pb2.AGGRESSOR_SIDE_BUY],
    )
    return market_pb2.TradeBatch(stream_id=stream_id, sequence=sequence, trades=[run])


async def get_bars(
    address: str, instrument: InstrumentId, as_of_ns: int | None = None
) -> list[market_pb2.Bar]:
    """The 1m bars of the capture window, as known at `as_of_ns` when given."""
    request = bar_service_pb2.GetBarsRequest(
        instrument=instrument.to_proto(),
        timeframe=market_pb2.TIMEFRAME_1M,
        start_time_ns=FIRST_FULL_MINUTE - 2 * MINUTE,
        end_time_ns=FIRST_FULL_MINUTE + 10 * MINUTE,
        limit=100,
    )
    if as_of_ns is not None:
        request.as_of_ns = as_of_ns
    async with aio.insecure_channel(address) as channel:
        response = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(request)
    return list(response.bars)


def start_request(**fields: object) -> replay_pb2.ReplayRequest:
    """A ReplayRequest opening a replay of the BTCUSDT and ETHUSDT 1m bars by default."""
    start = replay_pb2.ReplayStart(**fields)  # type: ignore[arg-type]
    return replay_pb2.ReplayRequest(start=start)


async def replay_bytes(channel: aio.Channel, start: replay_pb2.ReplayStart) -> list[bytes]:
    """Every response of a replay at the given settings, as the raw bytes received."""
    call = channel.stream_stream(
        REPLAY, request_serializer=replay_pb2.ReplayRequest.SerializeToString
    )(iter([replay_pb2.ReplayRequest(start=start)]))
    return [raw async for raw in call]


async def play_with_revisions(address: str) -> list[tuple[str, int]]:
    """Play both captures, then revise three final bars with late trades; (symbol, minute)s."""
    batches = {
        symbol: capture_batches(fixtures_root() / "binance_futures_um" / name, USDM, symbol)
        for symbol, name in CAPTURES.items()
    }
    for batch_list in batches.values():
        await publish(address, batch_list)
    revised = [
        ("BTCUSDT", FIRST_FULL_MINUTE, "70000"),
        ("ETHUSDT", FIRST_FULL_MINUTE + MINUTE, "3000"),
        ("BTCUSDT", FIRST_FULL_MINUTE, "70100"),  # a second revision of the same bar
    ]
    for index, (symbol, minute, price) in enumerate(revised):
        sequence = len(batches[symbol]) + 1 + sum(1 for s, _, _ in revised[:index] if s == symbol)
        batch = late_trade(symbol, symbol, sequence, 9_000_000_000 + index, price, minute + 1)
        await publish(address, [batch])
    return [(symbol, minute) for symbol, minute, _ in revised]


async def test_as_of_just_before_a_revision_gives_revision_0_just_after_revision_1(
    bars: ServiceProcess,
) -> None:
    assert await get_bars(bars.address, BTC, as_of_ns=1) == []  # before any data: empty
    batches = capture_batches(
        fixtures_root() / "binance_futures_um" / CAPTURES["BTCUSDT"], USDM, "pit"
    )
    await publish(bars.address, batches)
    now = {b.open_time_ns: b for b in await get_bars(bars.address, BTC, time.time_ns())}
    first = now[FIRST_FULL_MINUTE]
    assert (first.revision, first.final) == (0, True)
    assert first.committed_at_ns > 0
    higher = str(Decimal(first.high) + 100)
    async with aio.insecure_channel(bars.address) as channel:
        stream = bar_service_pb2_grpc.BarServiceStub(channel).Subscribe(
            bar_service_pb2.SubscribeRequest(
                instruments=[BTC.to_proto()], timeframes=[market_pb2.TIMEFRAME_1M]
            )
        )
        await asyncio.sleep(0.2)
        late = late_trade("BTCUSDT", "pit", len(batches) + 1, 9_999_999_999, higher, 0)
        late.trades[0].event_time_ns[0] = FIRST_FULL_MINUTE + 30 * NS_PER_S
        await publish(bars.address, [late])
        revised = (await asyncio.wait_for(stream.read(), timeout=10)).bar
        stream.cancel()
    assert (revised.open_time_ns, revised.revision, revised.high) == (FIRST_FULL_MINUTE, 1, higher)
    committed = revised.committed_at_ns
    assert committed > first.committed_at_ns

    just_before = {b.open_time_ns: b for b in await get_bars(bars.address, BTC, committed - 1)}
    just_after = {b.open_time_ns: b for b in await get_bars(bars.address, BTC, committed)}
    assert just_before[FIRST_FULL_MINUTE] == first
    revised.ClearField("trace_context")  # only live deliveries may carry one
    assert just_after[FIRST_FULL_MINUTE] == revised
    # The other bars did not change; a bar not final yet at an instant is left out.
    assert {t: b for t, b in just_after.items() if t != FIRST_FULL_MINUTE} == {
        t: b for t, b in just_before.items() if t != FIRST_FULL_MINUTE
    }
    not_yet = await get_bars(bars.address, BTC, first.committed_at_ns - 1)
    assert FIRST_FULL_MINUTE not in {b.open_time_ns for b in not_yet}
    assert await get_bars(bars.address, BTC, as_of_ns=1) == []


async def test_replay_at_maximum_speed_equals_the_recorded_live_stream_byte_for_byte(
    bars: ServiceProcess,
) -> None:
    started_ns = time.time_ns()
    async with aio.insecure_channel(bars.address) as channel:
        live = channel.unary_stream(
            SUBSCRIBE, request_serializer=bar_service_pb2.SubscribeRequest.SerializeToString
        )(bar_service_pb2.SubscribeRequest())
        recorded: list[bytes] = []

        async def record() -> None:
            async for raw in live:
                recorded.append(raw)

        recorder = asyncio.create_task(record())
        await asyncio.sleep(0.2)
        revised = await play_with_revisions(bars.address)
        # Wait until the stream is quiet: every final and revision has been delivered.
        count = -1
        while count != len(recorded):
            count = len(recorded)
            await asyncio.sleep(0.5)
        recorder.cancel()
        ended_ns = time.time_ns()

        replayed = await replay_bytes(
            channel, replay_pb2.ReplayStart(start_time_ns=started_ns, end_time_ns=ended_ns)
        )
        batched = await replay_bytes(
            channel,
            replay_pb2.ReplayStart(start_time_ns=started_ns, end_time_ns=ended_ns, max_batch=500),
        )
    bars_seen = [bar_service_pb2.SubscribeResponse.FromString(raw).bar for raw in recorded]
    revisions = [
        (b.symbol, b.open_time_ns, b.revision)
        for b in bars_seen
        if b.revision and b.timeframe == market_pb2.TIMEFRAME_1M
    ]
    assert sorted(revisions) == [
        ("BTCUSDT", FIRST_FULL_MINUTE, 1),
        ("BTCUSDT", FIRST_FULL_MINUTE, 2),
        ("ETHUSDT", FIRST_FULL_MINUTE + MINUTE, 1),
    ]
    assert len(revised) == 3
    assert len(recorded) > 10  # the finals of two instruments, then the revisions
    assert all(not b.trace_context for b in bars_seen)
    assert replayed == recorded
    # Batches carry the same bars, in the same order, in `bars`.
    from_batches = [
        bar.SerializeToString()
        for raw in batched
        for bar in bar_service_pb2.SubscribeResponse.FromString(raw).bars
    ]
    assert from_batches == [b.SerializeToString() for b in bars_seen]


class _Controls:
    """A request stream the test steers: put() a request, close() to half-close."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[replay_pb2.ReplayRequest | None] = asyncio.Queue()

    def put(self, request: replay_pb2.ReplayRequest) -> None:
        self._queue.put_nowait(request)

    async def __aiter__(self) -> AsyncIterator[replay_pb2.ReplayRequest]:
        while (request := await self._queue.get()) is not None:
            yield request


async def test_replay_paces_pauses_resumes_and_seeks_through_the_service(
    bars: ServiceProcess,
) -> None:
    started_ns = time.time_ns()
    batches = capture_batches(
        fixtures_root() / "binance_futures_um" / CAPTURES["BTCUSDT"], USDM, "pace"
    )
    await publish(bars.address, batches)
    await asyncio.sleep(1.5)  # the revision comes 1.5 s of commit time after the finals
    late = late_trade("BTCUSDT", "pace", len(batches) + 1, 9_999_999_998, "70000", 0)
    late.trades[0].event_time_ns[0] = FIRST_FULL_MINUTE + NS_PER_S
    await publish(bars.address, [late])
    await asyncio.sleep(0.3)
    range_ = {"start_time_ns": started_ns, "end_time_ns": time.time_ns()}
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)

        # 1x: the revision arrives about 1.5 s after the finals, not at once.
        controls = _Controls()
        controls.put(start_request(speed=1.0, **range_))
        call = stub.Replay(controls.__aiter__())
        first = (await call.read()).bar
        began = time.monotonic()
        while True:
            bar = (await asyncio.wait_for(call.read(), timeout=10)).bar
            if bar.revision:
                break
        assert time.monotonic() - began >= 1.0
        call.cancel()

        # Pause holds the revision back; resume lets it through.
        controls = _Controls()
        controls.put(start_request(speed=1.0, **range_))
        call = stub.Replay(controls.__aiter__())
        assert (await call.read()).bar.revision == 0
        controls.put(replay_pb2.ReplayRequest(pause=replay_pb2.ReplayPause()))
        seen: list[market_pb2.Bar] = []

        async def drain() -> None:
            while True:
                seen.append((await call.read()).bar)

        reader = asyncio.create_task(drain())
        await asyncio.sleep(3.0)  # twice the gap: unpaused, the revision would be here
        assert not any(b.revision for b in seen)
        controls.put(replay_pb2.ReplayRequest(resume=replay_pb2.ReplayResume()))
        for _ in range(100):
            if any(b.revision for b in seen):
                break
            await asyncio.sleep(0.1)
        assert any(b.revision for b in seen)
        reader.cancel()
        call.cancel()

        # Seek straight to the revision's commit time: it comes next, without the wait.
        controls = _Controls()
        controls.put(start_request(speed=1.0, **range_))
        call = stub.Replay(controls.__aiter__())
        await call.read()
        revision_ns = await _revision_commit_ns(bars.address)
        controls.put(replay_pb2.ReplayRequest(seek=replay_pb2.ReplaySeek(time_ns=revision_ns)))
        began = time.monotonic()
        # Finals already on the wire before the seek may still come first.
        while not (sought := (await asyncio.wait_for(call.read(), timeout=10)).bar).revision:
            pass
        assert sought.committed_at_ns == revision_ns
        assert time.monotonic() - began < 1.0
        call.cancel()
    assert first.committed_at_ns >= started_ns


async def _revision_commit_ns(address: str) -> int:
    bars_now = {b.open_time_ns: b for b in await get_bars(address, BTC, time.time_ns())}
    return bars_now[FIRST_FULL_MINUTE].committed_at_ns


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([replay_pb2.ReplayRequest(pause=replay_pb2.ReplayPause())], "must be `start`"),
        ([], "must open with a `start`"),
        ([start_request(speed=-1.0)], "speed"),
        ([start_request(speed=float("nan"))], "speed"),
        ([start_request(start_time_ns=10, end_time_ns=5)], "start_time_ns"),
        ([start_request(max_batch=100_000)], "max_batch"),
        (
            [start_request(instruments=[market_pb2.Instrument(symbol="BTCUSDT")])],
            "instruments[0]",
        ),
        ([start_request(timeframes=[market_pb2.Timeframe.ValueType(999)])], "timeframes"),
    ],
)
async def test_replay_bad_input_is_invalid_argument_naming_it(
    bars: ServiceProcess, requests: list[replay_pb2.ReplayRequest], message: str
) -> None:
    async with aio.insecure_channel(bars.address) as channel:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)

        async def stream() -> AsyncIterator[replay_pb2.ReplayRequest]:
            for request in requests:
                yield request
            if requests:  # keep the call open: the error must come from the server
                await asyncio.sleep(5)

        with pytest.raises(aio.AioRpcError) as raised:
            async for _ in stub.Replay(stream()):
                pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")


async def test_as_of_and_replay_before_any_data_are_empty(bars: ServiceProcess) -> None:
    assert await get_bars(bars.address, ETH, as_of_ns=1_000) == []
    async with aio.insecure_channel(bars.address) as channel:
        assert await replay_bytes(channel, replay_pb2.ReplayStart(end_time_ns=1_000)) == []
