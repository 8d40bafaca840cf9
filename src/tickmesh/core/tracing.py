"""OpenTelemetry tracing: set up from the standard OTEL_* variables, and carried in messages.

A long-lived stream call (IngestService.Publish, BarService.Subscribe) has one gRPC span for
hours, so its metadata cannot trace each batch or bar. Instead every TradeBatch, Bar and
analytics update carries a W3C trace context in a `trace_context` map, and the span of the
service that handles the message is a child of it: one trace follows a batch from the
collector through bars and analytics to the WebSocket push. Spans are per batch or per bar,
never per trade.

Without an exporter no SDK provider is installed: the API's no-op tracer hands back a
non-recording span that still carries the incoming context, so a service without an exporter
passes traces through at the cost of a context parse per message and nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind
from opentelemetry.util.types import AttributeValue

TRACER_NAME = "tickmesh"
TRACEPARENT = "traceparent"


def _exporter_from_environment() -> SpanExporter | None:
    """Pick the exporter OTEL_TRACES_EXPORTER names (otlp when only an endpoint is given)."""
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not choice:
        choice = "otlp" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
    if choice == "none":
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {choice!r}")


def configure_tracing(service: str) -> TracerProvider:
    """Install a tracer provider for `service` when OTEL_* names an exporter; returns it for shutdown.

    With no exporter the returned provider is not installed, so spans stay the API's cheap
    non-recording ones (see the module docstring).
    """
    name = os.environ.get("OTEL_SERVICE_NAME") or f"tickmesh-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return provider
    exporter = _exporter_from_environment()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    return provider


def exporting(provider: TracerProvider) -> bool:
    """True when configure_tracing installed `provider` (an exporter was configured)."""
    return trace.get_tracer_provider() is provider


def get_tracer(provider: trace.TracerProvider | None = None) -> trace.Tracer:
    """The tickmesh tracer of `provider` (the global one when None: tests pass their own).

    With no provider installed (no exporter) this is the API's no-op tracer itself, which
    message_span recognises to skip all work for messages that carry no context.
    """
    if provider is None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            return trace.NoOpTracer()
    return provider.get_tracer(TRACER_NAME)


def extract_context(carrier: Mapping[str, str]) -> Context:
    """The context a message's trace_context map carries (an empty one: a new root trace)."""
    if not carrier:
        return Context()
    return propagate.extract(carrier, context=Context())


def inject_span_context(carrier: MutableMapping[str, str], span_context: SpanContext) -> None:
    """Write `span_context` (and nothing when it is invalid) into a message's trace_context map."""
    if span_context.is_valid:
        propagate.inject(carrier, trace.set_span_in_context(NonRecordingSpan(span_context)))


def traceparent(span_context: SpanContext) -> str | None:
    """The W3C traceparent header of `span_context`, or None when it is invalid."""
    if not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"


@contextmanager
def message_span(
    tracer: trace.Tracer,
    name: str,
    carrier: Mapping[str, str],
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A current span handling one batch, bar or update: a child of the context it carries."""
    if not carrier and isinstance(tracer, trace.NoOpTracer):
        yield trace.INVALID_SPAN  # untraced all the way: not even a context switch
        return
    with tracer.start_as_current_span(
        name, context=extract_context(carrier), kind=kind, attributes=attributes
    ) as span:
        yield span


def links_to(span_contexts: Sequence[SpanContext]) -> list[Link]:
    """Links to the valid span contexts among `span_contexts` (e.g. the batches a commit made durable)."""
    return [Link(context) for context in span_contexts if context.is_valid]
