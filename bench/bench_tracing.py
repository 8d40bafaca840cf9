"""Benchmark: what tracing costs per batch (or bar) on the message path, traced and untraced.

One "hop" is what a service does per message: extract the incoming trace_context, run a
span as its child, and inject that span into the outgoing message. Measured with no tracer
provider installed (configure_tracing without an exporter: the API's no-op tracer), with
and without an incoming context, and with the SDK recording into a batch processor whose
exporter discards (the cost of tracing on, minus the network).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider, Tracer

from bench.report import Figure
from tickmesh.core.tracing import get_tracer, inject_span_context, message_span
from tickmesh.v2 import market_pb2

_HOPS = 50_000
_INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _microseconds_per_hop(tracer: Tracer, incoming: dict[str, str]) -> float:
    batch = market_pb2.TradeBatch(stream_id="bench", sequence=1)
    batch.trace_context.update(incoming)
    started = time.perf_counter()
    for sequence in range(_HOPS):
        outgoing = market_pb2.Bar()
        with message_span(tracer, "hop", batch.trace_context, {"sequence": sequence}) as span:
            inject_span_context(outgoing.trace_context, span.get_span_context())
    return (time.perf_counter() - started) / _HOPS * 1e6


def main() -> list[Figure]:
    """Measure one hop untraced (with and without an incoming context) and traced."""
    untraced = get_tracer(NoOpTracerProvider())
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=_HOPS))
    traced = get_tracer(provider)
    figures = [
        Figure("tracing off, no incoming context", _microseconds_per_hop(untraced, {}), "µs/batch"),
        Figure(
            "tracing off, context passed on",
            _microseconds_per_hop(untraced, {"traceparent": _INCOMING}),
            "µs/batch",
        ),
        Figure(
            "tracing on (SDK, batch processor)",
            _microseconds_per_hop(traced, {"traceparent": _INCOMING}),
            "µs/batch",
        ),
    ]
    provider.shutdown()
    for figure in figures:
        sys.stdout.write(f"{figure.name}: {figure.value:.1f} {figure.unit}\n")
    return figures


if __name__ == "__main__":
    main()
