"""Replay of a stored message log at a chosen pace, steered by the client.

The engine behind BarService.Replay and AnalyticsService.Replay. Each service keeps a log of
the serialized messages its live stream delivered, with their commit times; a `ReplayLog`
reads it in pages. A `ReplaySession` walks the log in order, holds each item back until its
commit time comes round on a virtual clock that runs at the requested speed, obeys pause,
resume, seek and speed changes from the request stream, and yields ready-to-send response
bytes. It reads the next page only when the last one was sent, so a client that stops
reading stops the replay through gRPC flow control instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc import aio

from tickmesh.v2 import replay_pb2

# Items read from the log per query: large enough that a maximum-speed replay spends its time
# sending, small enough that one page of pre-encoded messages is a few MiB at most.
DEFAULT_PAGE_SIZE = 5_000
MAX_BATCH = 10_000
_NS_PER_S = 1_000_000_000


class ReplayError(ValueError):
    """A replay request the client got wrong (answered with INVALID_ARGUMENT)."""


@dataclass(frozen=True, slots=True)
class LoggedItem:
    """One logged message: its place in the log, its commit time and its serialized bytes."""

    position: int
    committed_at_ns: int
    message: bytes


@dataclass(frozen=True, slots=True)
class LogPage:
    """Consecutive logged messages as three parallel columns, in log order.

    Columns rather than an object per message: at maximum speed building those objects cost
    the replay more than sending the bytes.
    """

    positions: list[int]
    committed_at_ns: list[int]
    messages: list[bytes]

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def of(cls, items: Iterable[LoggedItem]) -> LogPage:
        """The page of `items`, in their order."""
        listed = list(items)
        return cls(
            [i.position for i in listed],
            [i.committed_at_ns for i in listed],
            [i.message for i in listed],
        )


_EMPTY = LogPage([], [], [])


class ReplayLog(Protocol):
    """A service's log of delivered messages, already filtered to one replay's selection."""

    async def page(self, after_position: int, end_ns: int, limit: int) -> LogPage:
        """Up to `limit` items after `after_position` committed before `end_ns`, in log order."""
        ...

    async def position_before(self, time_ns: int) -> int:
        """A position such that the items after it are those committed at or after `time_ns`."""
        ...


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """A validated ReplayStart: the commit-time range, pace and batch size."""

    start_ns: int
    end_ns: int
    speed: float
    max_batch: int


def replay_plan(start: replay_pb2.ReplayStart, now_ns: int, *, batches: bool) -> ReplayPlan:
    """Validate a ReplayStart; `batches` says whether the service can batch responses."""
    end_ns = start.end_time_ns or now_ns
    if start.start_time_ns < 0 or start.end_time_ns < 0:
        raise ReplayError("start_time_ns and end_time_ns must not be negative")
    if start.start_time_ns >= end_ns:
        raise ReplayError(
            f"start_time_ns ({start.start_time_ns}) must be before end_time_ns ({end_ns})"
        )
    _check_speed(start.speed)
    max_batch = max(start.max_batch, 1)
    if max_batch > 1 and not batches:
        raise ReplayError("max_batch: this service replays one update per response")
    if max_batch > MAX_BATCH:
        raise ReplayError(f"max_batch must be at most {MAX_BATCH}, got {max_batch}")
    return ReplayPlan(start.start_time_ns, end_ns, start.speed, max_batch)


def _check_speed(speed: float) -> None:
    if not math.isfinite(speed) or speed < 0:
        raise ReplayError(f"speed must be 0 (as fast as read) or positive, got {speed}")


async def first_start(requests: AsyncIterator[replay_pb2.ReplayRequest]) -> replay_pb2.ReplayStart:
    """The ReplayStart a Replay call must open with."""
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise ReplayError("a replay must open with a `start` message") from None
    if first.WhichOneof("action") != "start":
        raise ReplayError("the first message of a replay must be `start`")
    return first.start


@dataclass(slots=True)
class _Pace:
    """The virtual clock: commit time `anchor_ns` was reached at monotonic `anchor_wall`."""

    speed: float
    anchor_wall: float = 0.0
    anchor_ns: int | None = None

    def now_ns(self, wall: float) -> int | None:
        if self.anchor_ns is None:
            return None
        return self.anchor_ns + int((wall - self.anchor_wall) * self.speed * _NS_PER_S)

    def restart(self, wall: float, at_ns: int | None) -> None:
        self.anchor_wall, self.anchor_ns = wall, at_ns


class ReplaySession:
    """One client's replay: pages of the log, paced and steered, as response bytes."""

    def __init__(
        self,
        log: ReplayLog,
        plan: ReplayPlan,
        encode: Callable[[Sequence[bytes]], bytes],
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`encode` turns one batch of logged messages into one response's bytes."""
        self._log = log
        self._plan = plan
        self._encode = encode
        self._page_size = page_size
        self._clock = clock
        self._pace = _Pace(plan.speed)
        self._running = asyncio.Event()
        self._running.set()
        self._changed = asyncio.Event()
        self._seek_ns: int | None = None
        self._error: ReplayError | None = None
        self._last_sent_ns: int | None = None
        self._steering: asyncio.Task[None] | None = None
        self.pages_read = 0

    def abandon(self) -> None:
        """Stop reading the request stream now: the call is over (cancelled, or the server stops).

        gRPC leaves a handler's generator suspended, not closed, when it cancels the call
        while a send waits on flow control; this frees what the session holds without
        waiting for the generator to be collected."""
        if self._steering is not None:
            self._steering.cancel()

    async def responses(
        self, controls: AsyncIterable[replay_pb2.ReplayRequest]
    ) -> AsyncGenerator[bytes, None]:
        """The replay's responses; `controls` is the rest of the request stream."""
        steering = asyncio.create_task(self._steer(controls), name="replay-steering")
        self._steering = steering
        try:
            async for response in self._walk():
                yield response
        finally:
            steering.cancel()
            # The request stream ends with the call (cancelled, or failed as the client went
            # away); either way the replay is over and there is nothing left to steer.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await steering

    async def _steer(self, controls: AsyncIterable[replay_pb2.ReplayRequest]) -> None:
        async for request in controls:
            action = request.WhichOneof("action")
            wall = self._clock()
            if action == "pause":
                self._pace.restart(wall, self._virtual_now(wall))
                self._running.clear()
            elif action == "resume":
                self._pace.restart(wall, self._pace.anchor_ns)
                self._running.set()
            elif action == "seek":
                self._seek_ns = request.seek.time_ns
            elif action == "speed":
                try:
                    _check_speed(request.speed.speed)
                except ReplayError as error:
                    self._fail(error)
                else:
                    self._pace.restart(wall, self._virtual_now(wall))
                    self._pace.speed = request.speed.speed
            else:
                self._fail(ReplayError(f"`{action}` is only valid as the first message"))
            self._changed.set()

    def _virtual_now(self, wall: float) -> int | None:
        """Where the replay stands: never behind what was already sent."""
        virtual = self._pace.now_ns(wall)
        if self._last_sent_ns is not None and (virtual is None or virtual < self._last_sent_ns):
            return self._last_sent_ns
        return virtual

    def _fail(self, error: ReplayError) -> None:
        self._error = error
        self._running.set()  # a paused walk wakes up to raise it

    async def _walk(self) -> AsyncIterator[bytes]:
        plan = self._plan
        position = await self._log.position_before(plan.start_ns)
        # The page being sent and the index of its first unsent item.
        page, at = _EMPTY, 0
        exhausted = False
        while True:
            self._raise_error()
            await self._running.wait()
            self._raise_error()
            if self._seek_ns is not None:
                target = min(max(self._seek_ns, plan.start_ns), plan.end_ns)
                self._seek_ns = None
                position = await self._log.position_before(target)
                page, at = _EMPTY, 0
                exhausted = False
                self._pace.restart(self._clock(), target)
            if at == len(page) and not exhausted:
                page, at = await self._log.page(position, plan.end_ns, self._page_size), 0
                self.pages_read += 1
                exhausted = len(page) < self._page_size
            if at == len(page):
                return
            end = await self._due(page, at)
            if end is None:
                continue  # a control message arrived while waiting: look again
            position = page.positions[end - 1]
            self._last_sent_ns = page.committed_at_ns[end - 1]
            messages, at = page.messages[at:end], end
            yield self._encode(messages)

    async def _due(self, page: LogPage, at: int) -> int | None:
        """The end of the next batch (page[at:end]) once it is due, or None if steering
        changed while waiting."""
        limit = self._plan.max_batch
        if self._pace.speed == 0:
            return min(at + limit, len(page))
        times = page.committed_at_ns
        wall = self._clock()
        virtual = self._pace.now_ns(wall)
        if virtual is None:
            # The first item sets the clock: a replay does not idle through an empty lead-in.
            self._pace.restart(wall, times[at])
            virtual = times[at]
        wait_ns = times[at] - virtual
        if wait_ns > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait(), timeout=wait_ns / _NS_PER_S / self._pace.speed
                )
            return None
        end = at + 1
        stop = min(at + limit, len(page))
        while end < stop and times[end] <= virtual:
            end += 1
        return end

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def raw_response_methods(
    add_to_server: Callable[[Any, aio.Server], None], *methods: str
) -> Callable[[Any, aio.Server], None]:
    """Wrap a generated add_…_to_server so `methods` send the bytes their handlers yield as
    they are: replays yield pre-encoded responses, and re-parsing them would cost the speed.

    The generated servicer base types those methods as yielding messages, so a servicer's
    override that yields bytes needs `# type: ignore[override]`."""

    def add(servicer: Any, server: aio.Server) -> None:
        add_to_server(servicer, _RawResponseServer(server, frozenset(methods)))

    return add


class _RawResponseServer:
    """Stands in for the server while generated code registers a service's handlers."""

    def __init__(self, server: aio.Server, methods: frozenset[str]) -> None:
        self._server = server
        self._methods = methods

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        # The generated code registers the same handlers again by name right after this call;
        # that call (below) installs both forms with the serializers replaced.
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        unknown = self._methods - handlers.keys()
        if unknown:
            raise ValueError(f"{service} has no method {sorted(unknown)}")
        patched = {
            name: handler._replace(response_serializer=None) if name in self._methods else handler
            for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, patched),)
        )
        self._server.add_registered_method_handlers(service, patched)
