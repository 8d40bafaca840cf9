"""One upstream server stream per shard, carrying every watched instrument the shard owns.

A stream per watched instrument made a whole market watched through one gateway 2,000 streams
per service, every message written and read on its own: at a minute close the bar service
woke 2,000 streams for one final each before its last subscriber got its bars. One stream a
shard carries the same messages, many to a response.

Its filter is the shard's watched instruments. Adding one reopens the stream with the new set
(a burst of adds, as when clients connect, is gathered for SETTLE_SECONDS first): the old call
is closed once the new one is live, and a subclass drops what both delivered, so nothing is
lost or repeated across the reopening. A stream that broke is reopened with backoff, resumed
where it stopped. An instrument nobody watches any longer stays in the filter until the next
reopening, and its messages are dropped here; the last instrument of a shard leaving closes
its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from grpc import aio
from prometheus_client import Counter, Gauge

from tickmesh.core.instruments import InstrumentId

log = logging.getLogger(__name__)

T = TypeVar("T")  # what listeners get
M = TypeVar("M")  # what the upstream stream yields
S = TypeVar("S", bound=Hashable)  # a shard (its backend)
SETTLE_SECONDS = 0.02
# How long a new call may take to go live before the old one is closed anyway (a service that
# sends its headers only with the first message).
_LIVE_TIMEOUT_SECONDS = 5.0
_MIN_BACKOFF_SECONDS = 0.2
_MAX_BACKOFF_SECONDS = 5.0


@dataclass(eq=False)
class ShardStream(Generic[S]):
    """One shard's upstream: who is watched, what the open call filters by, where to resume."""

    shard: S
    watched: set[InstrumentId] = field(default_factory=set)
    filter: frozenset[InstrumentId] = frozenset()
    # A subclass's resume point: the position of the last message delivered (a change id).
    resume_after: int | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class ShardStreams(ABC, Generic[T, M, S]):
    """Listeners per instrument; subclasses say how to subscribe and what to deliver."""

    kind = "upstream"  # names the streams in task names and log lines
    # False: a stream carries every instrument of its shard and is never reopened for one.
    filters_by_instrument = True

    def __init__(
        self, upstreams: Gauge, upstream_errors: Counter, settle_seconds: float = SETTLE_SECONDS
    ) -> None:
        self._upstreams_gauge = upstreams
        self._upstream_errors = upstream_errors
        self._settle_seconds = settle_seconds
        self._listeners: dict[InstrumentId, set[Callable[[T], None]]] = {}
        self._streams: dict[S, ShardStream[S]] = {}

    def upstream_count(self) -> int:
        """Open upstream streams (one per shard with watched instruments)."""
        return len(self._streams)

    def add(self, instrument: InstrumentId, listener: Callable[[T], None]) -> None:
        """Deliver `instrument`'s messages to `listener`, which must not block or modify them."""
        listeners = self._listeners.setdefault(instrument, set())
        listeners.add(listener)
        if len(listeners) > 1:
            return
        shard = self._shard(instrument)
        stream = self._streams.get(shard)
        if stream is None:
            stream = self._streams[shard] = ShardStream(shard)
            stream.task = asyncio.create_task(self._pump(stream), name=f"{self.kind}-{shard}")
            self._upstreams_gauge.set(len(self._streams))
        stream.watched.add(instrument)
        if self.filters_by_instrument and instrument not in stream.filter:
            stream.changed.set()

    async def remove(self, instrument: InstrumentId, listener: Callable[[T], None]) -> None:
        """Stop delivering to `listener`; the shard's last watched instrument closes its stream."""
        listeners = self._listeners.get(instrument)
        if listeners is None:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self._listeners[instrument]
        self._forget(instrument)
        shard = self._shard(instrument)
        stream = self._streams.get(shard)
        if stream is None:
            return
        stream.watched.discard(instrument)
        if stream.watched:
            return
        del self._streams[shard]
        self._upstreams_gauge.set(len(self._streams))
        if stream.task is not None:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.task

    async def close(self) -> None:
        """Close every upstream stream."""
        for instrument in list(self._listeners):
            for listener in list(self._listeners.get(instrument, ())):
                await self.remove(instrument, listener)

    def watching(self, instrument: InstrumentId) -> bool:
        """True while `instrument` has listeners."""
        return instrument in self._listeners

    def _hand_out(self, instrument: InstrumentId, message: T) -> None:
        """Give one message to every listener of `instrument` (none once it is unwatched)."""
        for listener in tuple(self._listeners.get(instrument, ())):
            listener(message)

    def _on_live(self, stream: ShardStream[S], headers: aio.Metadata) -> None:
        """A call of `stream` is live with these response headers (a subclass may take its
        first resume point from them)."""

    def _forget(self, instrument: InstrumentId) -> None:
        """`instrument` has no listeners any longer (a subclass drops what it kept of it)."""

    @abstractmethod
    def _shard(self, instrument: InstrumentId) -> S:
        """The shard that owns `instrument`."""

    @abstractmethod
    def _subscribe(self, stream: ShardStream[S]) -> aio.UnaryStreamCall[object, M]:
        """Open `stream`'s call for the instruments of `stream.filter`, resuming after
        `stream.resume_after` when it is set."""

    @abstractmethod
    def _on_message(self, stream: ShardStream[S], message: M) -> None:
        """Handle one upstream message: advance `stream.resume_after`, build and hand out."""

    async def _pump(self, stream: ShardStream[S]) -> None:
        """Follow the shard's stream until cancelled: reopen it when the watched set grows, and
        with backoff whenever it ends.

        A reopening is make-before-break: the old call keeps delivering until the new one is
        live (the service has sent its headers, which it does once subscribed), so a message
        published in between reaches the listeners through one or the other; the subclass
        drops what both delivered.
        """
        backoff = _MIN_BACKOFF_SECONDS
        name = f"{self.kind} stream of {stream.shard}"
        reading: asyncio.Future[tuple[bool, str]] | None = None
        try:
            while True:
                stream.changed.clear()
                stream.filter = frozenset(stream.watched)
                call = self._subscribe(stream)
                await self._until_live(stream, call)
                if reading is not None:
                    await _stop(reading)
                reading = asyncio.ensure_future(self._read(stream, call))
                changed = asyncio.ensure_future(stream.changed.wait())
                await asyncio.wait((reading, changed), return_when=asyncio.FIRST_COMPLETED)
                await _stop(changed)
                if not reading.done():
                    # Gather the rest of a burst of adds into the one reopening.
                    await asyncio.sleep(self._settle_seconds)
                    continue
                delivered, code = reading.result()
                reading = None
                if delivered:
                    backoff = _MIN_BACKOFF_SECONDS  # the stream worked: retry quickly
                self._upstream_errors.labels(code=code).inc()
                log.warning("%s ended (%s); reopening in %.1fs", name, code, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
        finally:
            if reading is not None:
                await _stop(reading)

    async def _until_live(
        self, stream: ShardStream[S], call: aio.UnaryStreamCall[object, M]
    ) -> None:
        """Wait (a bounded time) for `call`'s headers and hand them to `_on_live`; a failed call
        fails its reading, which says how it ended.

        `asyncio.wait`, not `wait_for`: on Python 3.11, `wait_for` cancelled just as the headers
        came returns them and drops the cancellation, which kept a stream running, and its
        remover waiting, for good.
        """
        headers = asyncio.ensure_future(call.initial_metadata())
        try:
            await asyncio.wait((headers,), timeout=_LIVE_TIMEOUT_SECONDS)
        finally:
            headers.cancel()
        if headers.done() and not headers.cancelled() and headers.exception() is None:
            self._on_live(stream, headers.result())

    async def _read(
        self, stream: ShardStream[S], call: aio.UnaryStreamCall[object, M]
    ) -> tuple[bool, str]:
        """Hand out every message of `call` until it ends: (anything delivered, status code)."""
        delivered = False
        try:
            messages: AsyncIterable[M] = call
            async for message in messages:
                delivered = True
                self._on_message(stream, message)
        except aio.AioRpcError as error:
            return delivered, error.code().name
        finally:
            call.cancel()
        return delivered, "OK"


async def follow_stream(
    name: str,
    subscribe: Callable[[], aio.UnaryStreamCall[object, M]],
    on_message: Callable[[M], None],
    ended: Counter,
    on_open: Callable[[], None] | None = None,
    on_close: Callable[[], None] | None = None,
) -> None:
    """Read a server stream until cancelled, reopening it with backoff whenever it ends.

    Each end is counted in `ended` by status code and logged; `on_open` runs once the call
    is made, `on_close` once it is over (before the wait).
    """
    backoff = _MIN_BACKOFF_SECONDS
    while True:
        call = subscribe()
        if on_open is not None:
            on_open()
        try:
            messages: AsyncIterable[M] = call
            async for message in messages:
                backoff = (
                    _MIN_BACKOFF_SECONDS  # the stream works again: next failure retries quickly
                )
                on_message(message)
            code = "OK"
        except aio.AioRpcError as error:
            code = error.code().name
        finally:
            if on_close is not None:
                on_close()
            call.cancel()
        ended.labels(code=code).inc()
        log.warning("%s ended (%s); reopening in %.1fs", name, code, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)


async def _stop(future: asyncio.Future[Any]) -> None:
    """Cancel `future` and wait until it is done (its call cancelled).

    `asyncio.wait`, not awaiting the future: a CancelledError caught here could be the
    caller's own (`remove` stopping the stream), and swallowing it kept a stream running,
    and its remover waiting, for good.
    """
    future.cancel()
    await asyncio.wait((future,))
