"""One upstream server stream per watched instrument, shared by every listener of this replica.

The bar fan-out (BarService.Subscribe) and the indicator fan-out (AnalyticsService.Subscribe)
differ only in what they subscribe to and what they hand on; the listener bookkeeping, the
stream's life (opened by the first listener, closed by the last) and reconnecting with
backoff live here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Callable
from typing import Generic, TypeVar

from grpc import aio
from prometheus_client import Counter, Gauge

from tickmesh.core.instruments import InstrumentId

log = logging.getLogger(__name__)

T = TypeVar("T")  # what listeners get
M = TypeVar("M")  # what the upstream stream yields
_MAX_BACKOFF_SECONDS = 5.0


class InstrumentStreams(ABC, Generic[T, M]):
    """Listeners per instrument; subclasses say what to subscribe to and what to deliver."""

    kind = "upstream"  # names the streams in task names and log lines

    def __init__(self, upstreams: Gauge, upstream_errors: Counter) -> None:
        self._upstreams_gauge = upstreams
        self._upstream_errors = upstream_errors
        self._listeners: dict[InstrumentId, set[Callable[[T], None]]] = {}
        self._upstreams: dict[InstrumentId, asyncio.Task[None]] = {}

    def upstream_count(self) -> int:
        """Open upstream streams (one per instrument with listeners)."""
        return len(self._upstreams)

    def add(self, instrument: InstrumentId, listener: Callable[[T], None]) -> None:
        """Deliver `instrument`'s messages to `listener`, which must not block or modify them."""
        self._listeners.setdefault(instrument, set()).add(listener)
        if instrument not in self._upstreams:
            self._upstreams[instrument] = asyncio.create_task(
                self._pump(instrument), name=f"{self.kind}-upstream-{instrument}"
            )
            self._upstreams_gauge.set(len(self._upstreams))

    async def remove(self, instrument: InstrumentId, listener: Callable[[T], None]) -> None:
        """Stop delivering to `listener`; the last one leaving closes the upstream stream."""
        listeners = self._listeners.get(instrument)
        if listeners is None:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self._listeners[instrument]
        task = self._upstreams.pop(instrument, None)
        self._upstreams_gauge.set(len(self._upstreams))
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Close every upstream stream."""
        for instrument in list(self._listeners):
            for listener in list(self._listeners.get(instrument, ())):
                await self.remove(instrument, listener)

    def _hand_out(self, instrument: InstrumentId, message: T) -> None:
        """Give one message to every listener of `instrument`."""
        for listener in tuple(self._listeners.get(instrument, ())):
            listener(message)

    @abstractmethod
    def _subscribe(self, instrument: InstrumentId) -> aio.UnaryStreamCall[object, M]:
        """Open the upstream stream of `instrument`."""

    @abstractmethod
    def _on_message(self, instrument: InstrumentId, message: M) -> None:
        """Handle one upstream message (usually: build and hand out)."""

    async def _pump(self, instrument: InstrumentId) -> None:
        # A subclass's _subscribe may resume where the broken stream left off.
        await follow_stream(
            f"{self.kind} stream of {instrument}",
            lambda: self._subscribe(instrument),
            functools.partial(self._on_message, instrument),
            self._upstream_errors,
        )


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
    backoff = 0.2
    while True:
        call = subscribe()
        if on_open is not None:
            on_open()
        try:
            messages: AsyncIterable[M] = call
            async for message in messages:
                backoff = 0.2  # the stream works again: next failure retries quickly
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
