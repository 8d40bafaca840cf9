"""One BarService.Subscribe per watched instrument, shared by every WebSocket client of this replica."""

from __future__ import annotations

from collections.abc import Callable

from grpc import aio
from opentelemetry import trace

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.tracing import get_tracer, inject_span_context, message_span
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.instrument_streams import InstrumentStreams
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.v2 import bar_service_pb2, market_pb2

BarListener = Callable[[market_pb2.Bar], None]


class BarFanout(InstrumentStreams[market_pb2.Bar, bar_service_pb2.SubscribeResponse]):
    """Bars (forming and final) of each watched instrument, from the shard that owns it."""

    kind = "bar"

    def __init__(
        self,
        backends: Backends,
        metrics: GatewayMetrics,
        on_bar: BarListener | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        super().__init__(metrics.bar_upstreams, metrics.upstream_errors)
        self._backends = backends
        self._tracer = tracer if tracer is not None else get_tracer()
        self._on_bar = on_bar  # sees every bar first (the chart cache drops what it changes)
        # The change id of the last final bar per watched instrument: a reopened stream resumes
        # after it, so final bars committed while it was broken (a bar-service restart, or
        # the bar service ending it as too slow) are replayed, not lost to the listeners.
        self._last_final: dict[InstrumentId, int] = {}

    async def remove(self, instrument: InstrumentId, listener: BarListener) -> None:
        """Stop delivering to `listener`; an instrument watched again later starts live."""
        await super().remove(instrument, listener)
        if instrument not in self._listeners:
            self._last_final.pop(instrument, None)

    def _subscribe(self, instrument: InstrumentId) -> aio.UnaryStreamCall[object, bar_service_pb2.SubscribeResponse]:  # fmt: skip
        stub = self._backends.bar_shard(instrument).stub  # the shard owning the instrument
        request = bar_service_pb2.SubscribeRequest(
            instruments=[instrument.to_proto()], include_forming=True
        )
        resume = self._last_final.get(instrument)
        if resume is not None:
            request.resume_after_change_id = resume
        return stub.Subscribe(request)

    def _on_message(self, instrument: InstrumentId, message: bar_service_pb2.SubscribeResponse) -> None:  # fmt: skip
        """Hand one upstream bar to every listener, in one span (per bar, not per client)."""
        bar = message.bar
        if bar.final and bar.change_id > self._last_final.get(instrument, 0):
            self._last_final[instrument] = bar.change_id
        if self._on_bar is not None:
            self._on_bar(bar)
        with message_span(
            self._tracer,
            "gateway.push_bar",
            bar.trace_context,
            {"tickmesh.instrument": str(instrument), "tickmesh.timeframe": int(bar.timeframe)},
            trace.SpanKind.PRODUCER,
        ) as span:
            if span.is_recording():  # the WebSocket message's traceparent names this span
                bar.trace_context.clear()
                inject_span_context(bar.trace_context, span.get_span_context())
            self._hand_out(instrument, bar)
