"""One AnalyticsService.Subscribe per analytics shard: live indicator rows for the WebSocket clients.

The stream carries every instrument of the shard, many updates a response, and is never
reopened for a newly watched instrument: indicator updates come once per bar close, a whole
market's few dozen a second, so the ones nobody here watches cost less to drop than a filter
would cost to keep (at a minute close, one stream per instrument was 2,000 streams to wake).

Each upstream update becomes ONE JSON message, built and framed once in one
"gateway.push_indicators" span (a child of the analytics span that computed the row) and shared
by every listener, which writes the frame straight to its socket as the bar channels do; the
message carries the span's W3C traceparent, so one trace runs from the collector's trade batch
through bars and analytics to this push. Updates that carry only a quality assessment are skipped:
quality stays on REST. The stream is live-only, like the bar stream: after a gap the browser
re-reads indicators over REST.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from grpc import aio
from opentelemetry import trace

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.tracing import TRACEPARENT, get_tracer, message_span, traceparent
from tickmesh.gateway.backends import AnalyticsShard, Backends
from tickmesh.gateway.frame_protocol import text_frame
from tickmesh.gateway.market_views import indicators_message
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.shard_streams import ShardStream, ShardStreams
from tickmesh.v2 import analytics_service_pb2


@dataclass(frozen=True, slots=True)
class IndicatorPush:
    """One indicator update as every listener gets it: its timeframe and its WebSocket frame."""

    timeframe: str  # the label, as clients subscribe to it
    frame: bytes  # the `indicators` message, one unmasked text frame


IndicatorListener = Callable[[IndicatorPush], None]


# Updates a response may carry (the analytics service caps it at 1000).
SUBSCRIBE_BATCH = 1000


class IndicatorFanout(
    ShardStreams[
        IndicatorPush, analytics_service_pb2.AnalyticsServiceSubscribeResponse, AnalyticsShard
    ]
):
    """Indicator messages of each watched instrument, built once per upstream update."""

    kind = "indicator"
    filters_by_instrument = False

    def __init__(
        self, backends: Backends, metrics: GatewayMetrics, tracer: trace.Tracer | None = None
    ) -> None:
        super().__init__(metrics.indicator_upstreams, metrics.indicator_upstream_errors)
        self._backends = backends
        self._tracer = tracer if tracer is not None else get_tracer()

    def _shard(self, instrument: InstrumentId) -> AnalyticsShard:
        return self._backends.analytics_shard(instrument)

    def _subscribe(self, stream: ShardStream[AnalyticsShard]) -> aio.UnaryStreamCall[object, analytics_service_pb2.AnalyticsServiceSubscribeResponse]:  # fmt: skip
        request = analytics_service_pb2.AnalyticsServiceSubscribeRequest(max_batch=SUBSCRIBE_BATCH)
        return stream.shard.stub.Subscribe(request)

    def _on_message(
        self,
        stream: ShardStream[AnalyticsShard],
        message: analytics_service_pb2.AnalyticsServiceSubscribeResponse,
    ) -> None:
        """Hand out each update of one upstream response, in order."""
        for update in message.updates if message.updates else (message,):
            if not update.HasField("indicators"):
                continue  # quality-only updates stay on REST
            instrument = InstrumentId(update.indicators.exchange, update.indicators.symbol)
            if self.watching(instrument):
                self._push(instrument, update)

    def _push(
        self,
        instrument: InstrumentId,
        message: analytics_service_pb2.AnalyticsServiceSubscribeResponse,
    ) -> None:
        """Build and frame the message once, in one span (per update, not per client), and hand
        it out: at a whole market's minute close, 2,000 updates each encoded and sent through
        its client's own task took the gateway ~1 s after analytics had committed them."""
        row = message.indicators
        with message_span(
            self._tracer,
            "gateway.push_indicators",
            message.trace_context,
            {"tickmesh.instrument": str(instrument), "tickmesh.timeframe": int(row.timeframe)},
            trace.SpanKind.PRODUCER,
        ) as span:
            body = indicators_message(str(instrument), row)
            parent = traceparent(span.get_span_context())
            if parent is not None:
                body[TRACEPARENT] = parent
            self._hand_out(
                instrument, IndicatorPush(body["timeframe"], text_frame(json.dumps(body)))
            )
