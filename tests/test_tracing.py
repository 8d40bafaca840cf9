"""Trace context in messages and in gRPC metadata: the shared helpers and the interceptors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc import aio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind

from tickmesh.core.grpc_client import open_channel
from tickmesh.core.grpc_server import GrpcServer, ServiceRegistration
from tickmesh.core.logs import TraceContextFilter
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.tracing import (
    TRACEPARENT,
    configure_tracing,
    extract_context,
    get_tracer,
    inject_span_context,
    links_to,
    message_span,
    traceparent,
)
from tickmesh.v2 import market_pb2

ECHO_SERVICE = "test.TraceEcho"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of the test's own (the global one stays untouched) and its spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def test_message_span_of_injected_batch_is_child_of_the_sender(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = get_tracer(provider)
    batch = market_pb2.TradeBatch(stream_id="s", sequence=7)
    with tracer.start_as_current_span("collector.publish_batch") as sender:
        inject_span_context(batch.trace_context, sender.get_span_context())
    received = market_pb2.TradeBatch.FromString(batch.SerializeToString())
    with message_span(tracer, "bars.apply_batch", received.trace_context, {"n": 1}):
        pass
    parent = _named(exporter, "collector.publish_batch")
    child = _named(exporter, "bars.apply_batch")
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert child.attributes == {"n": 1}
    assert received.trace_context[TRACEPARENT] == traceparent(parent.context)


def test_message_span_without_context_starts_a_new_trace_not_a_child_of_the_current_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = get_tracer(provider)
    with tracer.start_as_current_span("a long-lived call"), message_span(tracer, "batch", {}):
        pass
    batch = _named(exporter, "batch")
    assert batch.parent is None
    assert batch.context.trace_id != _named(exporter, "a long-lived call").context.trace_id


def test_untraced_process_passes_the_incoming_context_through_without_recording() -> None:
    tracer = get_tracer(NoOpTracerProvider())
    incoming = {TRACEPARENT: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with message_span(tracer, "bars.apply_batch", incoming) as span:
        assert not span.is_recording()
        outgoing: dict[str, str] = {}
        inject_span_context(outgoing, span.get_span_context())
    assert outgoing[TRACEPARENT] == incoming[TRACEPARENT]
    with message_span(tracer, "bars.apply_batch", {}) as span:
        nothing: dict[str, str] = {}
        inject_span_context(nothing, span.get_span_context())
    assert nothing == {}
    assert traceparent(span.get_span_context()) is None


def test_malformed_traceparent_starts_a_new_trace() -> None:
    context = extract_context({TRACEPARENT: "not-a-traceparent"})
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_links_to_skips_invalid_contexts(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    with get_tracer(provider).start_as_current_span("batch") as span:
        valid = span.get_span_context()
    links = links_to([valid, trace.INVALID_SPAN_CONTEXT])
    assert [link.context for link in links] == [valid]


def test_configure_tracing_without_exporter_installs_no_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    provider = configure_tracing("test")
    assert trace.get_tracer_provider() is not provider
    assert isinstance(get_tracer(), trace.NoOpTracer)  # message_span's free path
    with message_span(get_tracer(), "batch", {}) as span:
        assert span is trace.INVALID_SPAN
        assert trace.get_current_span() is trace.INVALID_SPAN
    provider.shutdown()


def _echo_registration() -> ServiceRegistration:
    """Handlers that answer with the trace id and parent of the span they run in."""

    def current() -> bytes:
        span = trace.get_current_span()
        return f"{span.get_span_context().trace_id:032x}".encode()

    async def unary(request: bytes, context: aio.ServicerContext) -> bytes:
        return current()

    async def streaming(
        requests: AsyncIterator[bytes], context: aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield current()

    def add(servicer: object, server: aio.Server) -> None:
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.stream_stream_rpc_method_handler(streaming),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(ECHO_SERVICE, handlers),)
        )

    return ServiceRegistration(ECHO_SERVICE, add, object())


async def test_grpc_calls_carry_traceparent_to_a_child_server_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    server = GrpcServer(
        "127.0.0.1:0", [_echo_registration()], CoreMetrics(), 1.0, tracer_provider=provider
    )
    await server.start()
    try:
        async with open_channel(server.address, tracer_provider=provider) as channel:
            with get_tracer(provider).start_as_current_span("caller") as caller:
                unary = await channel.unary_unary(f"/{ECHO_SERVICE}/Unary")(b"")
                call = channel.stream_stream(f"/{ECHO_SERVICE}/Stream")()
                await call.write(b"")
                streamed = await call.read()
                await call.done_writing()
                assert await call.read() is aio.EOF
    finally:
        await server.stop()
    trace_id = f"{caller.get_span_context().trace_id:032x}".encode()
    assert unary == trace_id
    assert streamed == trace_id
    finished = exporter.get_finished_spans()
    for method in ("Unary", "Stream"):
        name = f"/{ECHO_SERVICE}/{method}"
        client = next(s for s in finished if s.name == name and s.kind == SpanKind.CLIENT)
        handler = next(s for s in finished if s.name == name and s.kind == SpanKind.SERVER)
        caller_id = caller.get_span_context().span_id
        assert client.parent is not None
        assert client.parent.span_id == caller_id
        assert handler.parent is not None
        assert handler.parent.span_id == client.context.span_id
        assert handler.context.trace_id == caller.get_span_context().trace_id


def test_log_lines_inside_a_message_span_carry_its_trace_and_span_ids(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    incoming = {TRACEPARENT: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    record = logging.LogRecord("bars", logging.WARNING, __file__, 1, "jumped", None, None)
    with message_span(get_tracer(provider), "bars.apply_batch", incoming) as span:
        TraceContextFilter().filter(record)
    assert record.__dict__["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert record.__dict__["span_id"] == f"{span.get_span_context().span_id:016x}"
