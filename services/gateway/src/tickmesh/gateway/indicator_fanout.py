"""One AnalyticsService.Subscribe per watched symbol: live indicator rows for the WebSocket clients.

Each upstream update becomes ONE JSON message, built in one "gateway.push_indicators" span (a
child of the analytics span that computed the row) and shared by every listener; the message
carries the span's W3C traceparent, so one trace runs from the collector's trade batch through
bars and analytics to this push. Updates that carry only a quality assessment are skipped:
quality stays on REST. The stream is live-only, like the bar stream: after a gap the browser
re-reads indicators over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from grpc import aio
from opentelemetry import trace

from tickmesh.core.timeframes import from_proto
from tickmesh.core.tracing import TRACEPARENT, get_tracer, message_span, traceparent
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.market_views import indicators_out
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.v1 import analytics_service_pb2

log = logging.getLogger(__name__)

IndicatorListener = Callable[[dict[str, Any]], None]
_MAX_BACKOFF_SECONDS = 5.0


class IndicatorFanout:
    """Listeners per symbol; the upstream stream opens with the first and closes with the last."""

    def __init__(
        self, backends: Backends, metrics: GatewayMetrics, tracer: trace.Tracer | None = None
    ) -> None:
        self._backends = backends
        self._metrics = metrics
        self._tracer = tracer if tracer is not None else get_tracer()
        self._listeners: dict[str, set[IndicatorListener]] = {}
        self._upstreams: dict[str, asyncio.Task[None]] = {}

    def add(self, symbol: str, listener: IndicatorListener) -> None:
        """Deliver `symbol`'s indicator messages to `listener`, which must not block or modify them."""
        self._listeners.setdefault(symbol, set()).add(listener)
        if symbol not in self._upstreams:
            self._upstreams[symbol] = asyncio.create_task(
                self._pump(symbol), name=f"indicators-upstream-{symbol}"
            )
            self._metrics.indicator_upstreams.set(len(self._upstreams))

    async def remove(self, symbol: str, listener: IndicatorListener) -> None:
        """Stop delivering to `listener`; the last one leaving closes the upstream stream."""
        listeners = self._listeners.get(symbol)
        if listeners is None:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self._listeners[symbol]
        task = self._upstreams.pop(symbol, None)
        self._metrics.indicator_upstreams.set(len(self._upstreams))
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Close every upstream stream."""
        for symbol in list(self._listeners):
            for listener in list(self._listeners.get(symbol, ())):
                await self.remove(symbol, listener)

    def _deliver(
        self, symbol: str, update: analytics_service_pb2.AnalyticsServiceSubscribeResponse
    ) -> None:
        """Build the message once, in one span (per update, not per client), and hand it out."""
        row = update.indicators
        with message_span(
            self._tracer,
            "gateway.push_indicators",
            update.trace_context,
            {"tickmesh.symbol": symbol, "tickmesh.timeframe": int(row.timeframe)},
            trace.SpanKind.PRODUCER,
        ) as span:
            message: dict[str, Any] = {
                "type": "indicators",
                "symbol": symbol,
                "timeframe": from_proto(row.timeframe).label,
                "indicators": indicators_out(row).model_dump(mode="json"),
            }
            parent = traceparent(span.get_span_context())
            if parent is not None:
                message[TRACEPARENT] = parent
            for listener in tuple(self._listeners.get(symbol, ())):
                listener(message)

    async def _pump(self, symbol: str) -> None:
        backoff = 0.2
        stub = self._backends.analytics_service
        request = analytics_service_pb2.AnalyticsServiceSubscribeRequest(symbols=[symbol])
        while True:
            call = stub.Subscribe(request)
            try:
                async for update in call:
                    backoff = 0.2  # the stream works again: next failure retries quickly
                    if update.HasField("indicators"):
                        self._deliver(symbol, update)
                code = "OK"
            except aio.AioRpcError as error:
                code = error.code().name
            finally:
                call.cancel()
            self._metrics.indicator_upstream_errors.labels(code=code).inc()
            log.warning(
                "indicator stream of %s ended (%s); reopening in %.1fs", symbol, code, backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
