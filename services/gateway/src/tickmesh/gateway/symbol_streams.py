"""One upstream server stream per watched symbol, shared by every listener of this replica.

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

log = logging.getLogger(__name__)

T = TypeVar("T")  # what listeners get
M = TypeVar("M")  # what the upstream stream yields
_MAX_BACKOFF_SECONDS = 5.0


class SymbolStreams(ABC, Generic[T, M]):
    """Listeners per symbol; subclasses say what to subscribe to and what to deliver."""

    kind = "upstream"  # names the streams in task names and log lines

    def __init__(self, upstreams: Gauge, upstream_errors: Counter) -> None:
        self._upstreams_gauge = upstreams
        self._upstream_errors = upstream_errors
        self._listeners: dict[str, set[Callable[[T], None]]] = {}
        self._upstreams: dict[str, asyncio.Task[None]] = {}

    def upstream_count(self) -> int:
        """Open upstream streams (one per symbol with listeners)."""
        return len(self._upstreams)

    def add(self, symbol: str, listener: Callable[[T], None]) -> None:
        """Deliver `symbol`'s messages to `listener`, which must not block or modify them."""
        self._listeners.setdefault(symbol, set()).add(listener)
        if symbol not in self._upstreams:
            self._upstreams[symbol] = asyncio.create_task(
                self._pump(symbol), name=f"{self.kind}-upstream-{symbol}"
            )
            self._upstreams_gauge.set(len(self._upstreams))

    async def remove(self, symbol: str, listener: Callable[[T], None]) -> None:
        """Stop delivering to `listener`; the last one leaving closes the upstream stream."""
        listeners = self._listeners.get(symbol)
        if listeners is None:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self._listeners[symbol]
        task = self._upstreams.pop(symbol, None)
        self._upstreams_gauge.set(len(self._upstreams))
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Close every upstream stream."""
        for symbol in list(self._listeners):
            for listener in list(self._listeners.get(symbol, ())):
                await self.remove(symbol, listener)

    def _hand_out(self, symbol: str, message: T) -> None:
        """Give one message to every listener of `symbol`."""
        for listener in tuple(self._listeners.get(symbol, ())):
            listener(message)

    @abstractmethod
    def _subscribe(self, symbol: str) -> aio.UnaryStreamCall[object, M]:
        """Open the upstream stream of `symbol`."""

    @abstractmethod
    def _on_message(self, symbol: str, message: M) -> None:
        """Handle one upstream message (usually: build and hand out)."""

    async def _pump(self, symbol: str) -> None:
        # A subclass's _subscribe may resume where the broken stream left off.
        await follow_stream(
            f"{self.kind} stream of {symbol}",
            lambda: self._subscribe(symbol),
            functools.partial(self._on_message, symbol),
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
