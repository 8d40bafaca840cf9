"""The replay engine: order, batches, pace, pause/resume/seek/speed, bad requests, and the
pass-through serializer over a real gRPC server on loopback. The services' own tests replay
their PostgreSQL logs; here a list stands in for the log so pacing is easy to see."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from grpc import aio

from tests.grpc_helpers import free_port
from tickmesh.core.protowire import embedded
from tickmesh.core.replay import (
    LoggedItem,
    LogPage,
    ReplayError,
    ReplaySession,
    first_start,
    raw_response_methods,
    replay_plan,
)
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2, replay_pb2

MS = 1_000_000


class ListLog:
    """A log held in a list: position i+1 is item i."""

    def __init__(self, commit_times_ns: Sequence[int]) -> None:
        self.items = [
            LoggedItem(i + 1, t, market_pb2.Bar(symbol=f"S{i}", open_time_ns=t).SerializeToString())
            for i, t in enumerate(commit_times_ns)
        ]
        self.pages = 0

    async def page(self, after_position: int, end_ns: int, limit: int) -> LogPage:
        self.pages += 1
        return LogPage.of(
            [i for i in self.items if i.position > after_position and i.committed_at_ns < end_ns][
                :limit
            ]
        )

    async def position_before(self, time_ns: int) -> int:
        return max((i.position for i in self.items if i.committed_at_ns < time_ns), default=0)


def _start(**fields: float) -> replay_pb2.ReplayStart:
    return replay_pb2.ReplayStart(**fields)  # type: ignore[arg-type]


def _bars(response: bytes) -> list[str]:
    parsed = bar_service_pb2.SubscribeResponse.FromString(response)
    return [bar.symbol for bar in parsed.bars] if parsed.bars else [parsed.bar.symbol]


def _encode_single(messages: Sequence[bytes]) -> bytes:
    return embedded(1, messages)


def _encode_batch(messages: Sequence[bytes]) -> bytes:
    return embedded(2, messages)


class Controls:
    """A request stream the test writes to."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[replay_pb2.ReplayRequest | None] = asyncio.Queue()

    def send(self, request: replay_pb2.ReplayRequest) -> None:
        self.queue.put_nowait(request)

    async def __aiter__(self) -> AsyncIterator[replay_pb2.ReplayRequest]:
        while (request := await self.queue.get()) is not None:
            yield request


async def test_maximum_speed_delivers_every_item_in_order_one_per_response() -> None:
    log = ListLog([10 * MS * i for i in range(1, 13)])
    plan = replay_plan(_start(start_time_ns=1, end_time_ns=10**12), 0, batches=True)
    session = ReplaySession(log, plan, _encode_single, page_size=5)
    got = [_bars(r) async for r in session.responses(Controls())]
    assert got == [[f"S{i}"] for i in range(12)]
    assert session.pages_read == 3


async def test_batches_hold_at_most_max_batch_items_in_order() -> None:
    log = ListLog([MS * i for i in range(1, 11)])
    plan = replay_plan(_start(start_time_ns=1, max_batch=4), 10**12, batches=True)
    got = [_bars(r) async for r in ReplaySession(log, plan, _encode_batch).responses(Controls())]
    assert got == [["S0", "S1", "S2", "S3"], ["S4", "S5", "S6", "S7"], ["S8", "S9"]]


async def test_the_range_is_of_commit_times_start_included_end_excluded() -> None:
    log = ListLog([100, 200, 300, 400])
    plan = replay_plan(_start(start_time_ns=200, end_time_ns=400), 0, batches=False)
    got = [_bars(r) async for r in ReplaySession(log, plan, _encode_single).responses(Controls())]
    assert got == [["S1"], ["S2"]]


async def test_a_paced_replay_takes_the_range_divided_by_the_speed() -> None:
    # Ten items 100 ms of commit time apart at 10x: 900 ms of log takes at least 90 ms.
    log = ListLog([100 * MS * i for i in range(1, 11)])
    plan = replay_plan(_start(start_time_ns=1, speed=10), 10**12, batches=False)
    started = time.monotonic()
    got = [_bars(r) async for r in ReplaySession(log, plan, _encode_single).responses(Controls())]
    assert len(got) == 10
    assert time.monotonic() - started >= 0.09 * 0.9


async def test_pause_stops_delivery_and_resume_continues_where_it_stopped() -> None:
    log = ListLog([10 * MS * i for i in range(1, 6)])
    plan = replay_plan(_start(start_time_ns=1, speed=1), 10**12, batches=False)
    controls = Controls()
    stream = ReplaySession(log, plan, _encode_single).responses(controls)
    assert _bars(await anext(stream)) == ["S0"]
    controls.send(replay_pb2.ReplayRequest(pause=replay_pb2.ReplayPause()))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.3)  # the whole rest of the log is due within 40 ms unpaused
    assert not waiting.done()
    controls.send(replay_pb2.ReplayRequest(resume=replay_pb2.ReplayResume()))
    assert _bars(await waiting) == ["S1"]
    assert [_bars(r) async for r in stream] == [["S2"], ["S3"], ["S4"]]


async def test_seek_jumps_to_the_first_item_committed_at_or_after_the_time() -> None:
    log = ListLog([1_000 * MS * i for i in range(1, 11)])  # one item a second at 1x
    plan = replay_plan(_start(start_time_ns=1, speed=1), 10**13, batches=False)
    controls = Controls()
    stream = ReplaySession(log, plan, _encode_single).responses(controls)
    assert _bars(await anext(stream)) == ["S0"]
    controls.send(replay_pb2.ReplayRequest(seek=replay_pb2.ReplaySeek(time_ns=8_000 * MS)))
    assert _bars(await asyncio.wait_for(anext(stream), 5)) == ["S7"]


async def test_speed_zero_midway_sends_the_rest_at_once() -> None:
    log = ListLog([1_000 * MS * i for i in range(1, 11)])
    plan = replay_plan(_start(start_time_ns=1, speed=1), 10**13, batches=False)
    controls = Controls()
    stream = ReplaySession(log, plan, _encode_single).responses(controls)
    assert _bars(await anext(stream)) == ["S0"]
    controls.send(replay_pb2.ReplayRequest(speed=replay_pb2.ReplaySpeed(speed=0)))
    rest = await asyncio.wait_for(_collect(stream), 5)
    assert rest == [[f"S{i}"] for i in range(1, 10)]


async def _collect(stream: AsyncIterator[bytes]) -> list[list[str]]:
    return [_bars(r) async for r in stream]


@pytest.mark.parametrize(
    ("start", "batches", "message"),
    [
        (_start(start_time_ns=5, end_time_ns=5), True, "must be before"),
        (_start(start_time_ns=-1), True, "negative"),
        (_start(speed=-2), True, "speed"),
        (_start(speed=float("nan")), True, "speed"),
        (_start(max_batch=2), False, "max_batch"),
        (_start(max_batch=1_000_000), True, "max_batch"),
    ],
)
def test_bad_starts_are_refused_with_the_field_named(
    start: replay_pb2.ReplayStart, batches: bool, message: str
) -> None:
    with pytest.raises(ReplayError, match=message):
        replay_plan(start, 10**12, batches=batches)


async def test_a_second_start_and_a_bad_speed_end_the_replay_with_an_error() -> None:
    for request in (
        replay_pb2.ReplayRequest(start=replay_pb2.ReplayStart()),
        replay_pb2.ReplayRequest(speed=replay_pb2.ReplaySpeed(speed=-1)),
    ):
        log = ListLog([1_000 * MS * i for i in range(1, 5)])
        plan = replay_plan(_start(start_time_ns=1, speed=1), 10**13, batches=False)
        controls = Controls()
        stream = ReplaySession(log, plan, _encode_single).responses(controls)
        await anext(stream)
        controls.send(request)
        with pytest.raises(ReplayError):
            await asyncio.wait_for(_collect(stream), 5)


async def test_the_first_message_must_be_start() -> None:
    async def requests() -> AsyncIterator[replay_pb2.ReplayRequest]:
        yield replay_pb2.ReplayRequest(pause=replay_pb2.ReplayPause())

    with pytest.raises(ReplayError, match="first message"):
        await first_start(requests())


class _Servicer(bar_service_pb2_grpc.BarServiceServicer):
    async def Subscribe(
        self, request: bar_service_pb2.SubscribeRequest, context: object
    ) -> AsyncIterator[bar_service_pb2.SubscribeResponse]:
        raise NotImplementedError
        yield bar_service_pb2.SubscribeResponse()

    async def Replay(  # type: ignore[override]  # yields pre-encoded bytes
        self, request_iterator: AsyncIterator[replay_pb2.ReplayRequest], context: object
    ) -> AsyncIterator[bytes]:
        start = await first_start(request_iterator)
        log = ListLog([MS * i for i in range(1, 8)])
        plan = replay_plan(start, 10**12, batches=True)
        encode = _encode_batch if plan.max_batch > 1 else _encode_single
        async for response in ReplaySession(log, plan, encode).responses(request_iterator):
            yield response

    async def GetBars(
        self, request: bar_service_pb2.GetBarsRequest, context: object
    ) -> bar_service_pb2.GetBarsResponse:
        return bar_service_pb2.GetBarsResponse(bars=[market_pb2.Bar(symbol="plain")])


async def test_pre_encoded_responses_reach_a_generated_client_unchanged() -> None:
    server = aio.server()
    raw_response_methods(bar_service_pb2_grpc.add_BarServiceServicer_to_server, "Replay")(
        _Servicer(), server
    )
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = bar_service_pb2_grpc.BarServiceStub(channel)
            singles = [
                r.bar.symbol
                async for r in stub.Replay(
                    iter([replay_pb2.ReplayRequest(start=_start(start_time_ns=1))])
                )
            ]
            assert singles == [f"S{i}" for i in range(7)]
            batches = [
                [b.symbol for b in r.bars]
                async for r in stub.Replay(
                    iter([replay_pb2.ReplayRequest(start=_start(start_time_ns=1, max_batch=5))])
                )
            ]
            assert batches == [[f"S{i}" for i in range(5)], ["S5", "S6"]]
            plain = await stub.GetBars(bar_service_pb2.GetBarsRequest())
            assert [b.symbol for b in plain.bars] == ["plain"]
    finally:
        await server.stop(None)


def test_wrapping_a_method_the_service_lacks_fails_loudly() -> None:
    with pytest.raises(ValueError, match="no method"):
        raw_response_methods(bar_service_pb2_grpc.add_BarServiceServicer_to_server, "Nope")(
            _Servicer(), aio.server()
        )
