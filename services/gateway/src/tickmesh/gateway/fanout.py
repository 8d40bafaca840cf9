"""One BarService.Subscribe per bar shard, shared by every WebSocket client of this replica."""

from __future__ import annotations

from collections.abc import Callable

from grpc import aio
from opentelemetry import trace

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.live_after import live_after
from tickmesh.core.tracing import get_tracer, inject_span_context, message_span
from tickmesh.gateway.backends import Backends, BarShard
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.shard_streams import ShardStream, ShardStreams
from tickmesh.v2 import bar_service_pb2, market_pb2

BarListener = Callable[[market_pb2.Bar], None]

# Bars a response may carry: a minute close's finals and each trade's forming bars of every
# timeframe travel many to a message (the bar service caps it at 1000).
SUBSCRIBE_BATCH = 1000


class BarFanout(ShardStreams[market_pb2.Bar, bar_service_pb2.SubscribeResponse, BarShard]):
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
        # The change id of the last final bar handed out per watched instrument: a final
        # delivered by both calls of a reopening, or replayed again, is handed out once.
        self._last_final: dict[InstrumentId, int] = {}

    def _on_live(self, stream: ShardStream[BarShard], headers: aio.Metadata) -> None:
        if stream.resume_after is None:
            # From now on every reopening resumes: none can lose a final committed meanwhile.
            stream.resume_after = live_after(headers)

    def _forget(self, instrument: InstrumentId) -> None:
        self._last_final.pop(instrument, None)

    def _shard(self, instrument: InstrumentId) -> BarShard:
        return self._backends.bar_shard(instrument)

    def _subscribe(self, stream: ShardStream[BarShard]) -> aio.UnaryStreamCall[object, bar_service_pb2.SubscribeResponse]:  # fmt: skip
        """Every watched instrument of the shard. A reopened stream resumes after the last final
        it delivered, so finals committed meanwhile (while it was broken by a bar-service
        restart or ended as too slow, or while it was reopened for a new instrument) are
        replayed, not lost to the listeners; a new instrument starts from there too."""
        request = bar_service_pb2.SubscribeRequest(
            instruments=[instrument.to_proto() for instrument in stream.filter],
            include_forming=True,
            max_batch=SUBSCRIBE_BATCH,
        )
        if stream.resume_after is not None:
            request.resume_after_change_id = stream.resume_after
        return stream.shard.stub.Subscribe(request)

    def _on_message(self, stream: ShardStream[BarShard], message: bar_service_pb2.SubscribeResponse) -> None:  # fmt: skip
        """Hand each bar of one upstream response to the listeners of its instrument, in order."""
        for bar in message.bars if message.bars else (message.bar,):
            instrument = InstrumentId(bar.exchange, bar.symbol)
            if bar.final:
                if bar.change_id <= self._last_final.get(instrument, 0):
                    continue  # handed out already
                # Finals come in change-id order within a shard: the greatest is where to resume.
                stream.resume_after = max(bar.change_id, stream.resume_after or 0)
                if self.watching(instrument):
                    self._last_final[instrument] = bar.change_id
            if self.watching(instrument):
                self._push(instrument, bar)

    def _push(self, instrument: InstrumentId, bar: market_pb2.Bar) -> None:
        """Hand one bar to every listener, in one span (per bar, not per client)."""
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
