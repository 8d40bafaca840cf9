"""One BarService.Subscribe per watched symbol, shared by every WebSocket client of this replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from grpc import aio
from opentelemetry import trace

from tickmesh.core.tracing import get_tracer, inject_span_context, message_span
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.v1 import bar_service_pb2, market_pb2

log = logging.getLogger(__name__)

BarListener = Callable[[market_pb2.Bar], None]
_MAX_BACKOFF_SECONDS = 5.0


class BarFanout:
    """Listeners per symbol; the upstream stream opens with the first and closes with the last."""

    def __init__(
        self,
        backends: Backends,
        metrics: GatewayMetrics,
        on_bar: BarListener | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._backends = backends
        self._tracer = tracer if tracer is not None else get_tracer()
        self._metrics = metrics
        self._on_bar = on_bar  # sees every bar first (the chart cache drops what it changes)
        self._listeners: dict[str, set[BarListener]] = {}
        self._upstreams: dict[str, asyncio.Task[None]] = {}

    def upstream_count(self) -> int:
        """Open upstream streams (one per symbol with listeners)."""
        return len(self._upstreams)

    def add(self, symbol: str, listener: BarListener) -> None:
        """Deliver `symbol`'s bars (forming and final) to `listener`, which must not block."""
        listeners = self._listeners.setdefault(symbol, set())
        listeners.add(listener)
        if symbol not in self._upstreams:
            self._upstreams[symbol] = asyncio.create_task(
                self._pump(symbol), name=f"bars-upstream-{symbol}"
            )
            self._metrics.bar_upstreams.set(len(self._upstreams))

    async def remove(self, symbol: str, listener: BarListener) -> None:
        """Stop delivering to `listener`; the last one leaving closes the upstream stream."""
        listeners = self._listeners.get(symbol)
        if listeners is None:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self._listeners[symbol]
        task = self._upstreams.pop(symbol, None)
        self._metrics.bar_upstreams.set(len(self._upstreams))
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Close every upstream stream."""
        for symbol in list(self._listeners):
            for listener in list(self._listeners.get(symbol, ())):
                await self.remove(symbol, listener)

    def _deliver(self, symbol: str, bar: market_pb2.Bar) -> None:
        """Hand one upstream bar to every listener, in one span (per bar, not per client)."""
        with message_span(
            self._tracer,
            "gateway.push_bar",
            bar.trace_context,
            {"tickmesh.symbol": bar.symbol, "tickmesh.timeframe": int(bar.timeframe)},
            trace.SpanKind.PRODUCER,
        ) as span:
            if span.is_recording():  # the WebSocket message's traceparent names this span
                bar.trace_context.clear()
                inject_span_context(bar.trace_context, span.get_span_context())
            for listener in tuple(self._listeners.get(symbol, ())):
                listener(bar)

    async def _pump(self, symbol: str) -> None:
        backoff = 0.2
        stub = self._backends.bar_shard(symbol).stub  # the shard owning the symbol
        while True:
            call = stub.Subscribe(
                bar_service_pb2.SubscribeRequest(symbols=[symbol], include_forming=True)
            )
            try:
                async for response in call:
                    backoff = 0.2  # the stream works again: next failure retries quickly
                    if self._on_bar is not None:
                        self._on_bar(response.bar)
                    self._deliver(symbol, response.bar)
                code = "OK"
            except aio.AioRpcError as error:
                code = error.code().name
            finally:
                call.cancel()
            # Live-only subscription: after a gap the browser re-reads history over REST.
            self._metrics.upstream_errors.labels(code=code).inc()
            log.warning("bar stream of %s ended (%s); reopening in %.1fs", symbol, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
