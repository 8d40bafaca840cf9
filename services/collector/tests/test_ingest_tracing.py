"""Each published batch is one span whose context travels in the batch, unchanged by resends."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

import grpc
from grpc import aio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.tracing import TRACEPARENT, get_tracer, traceparent
from tickmesh.v2 import ingest_service_pb2, ingest_service_pb2_grpc, market_pb2

from .synthetic_runs import flat_run

BATCHES = 5
TRADES_PER_BATCH = 3


class RecordingIngest(ingest_service_pb2_grpc.IngestServiceServicer):
    """Ends the first call after three batches unacknowledged; records every copy's context."""

    def __init__(self) -> None:
        self.first_call = True
        self.contexts: dict[int, list[str]] = defaultdict(list)

    async def Publish(
        self,
        request_iterator: AsyncIterator[ingest_service_pb2.PublishRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[ingest_service_pb2.PublishResponse]:
        """Record; abort the first call before acknowledging anything; then ack each batch."""
        async for request in request_iterator:
            batch = request.batch
            self.contexts[batch.sequence].append(batch.trace_context[TRACEPARENT])
            if self.first_call and len(self.contexts) == 3:
                self.first_call = False
                await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            if not self.first_call:
                yield ingest_service_pb2.PublishResponse(
                    stream_id=batch.stream_id, acked_sequence=batch.sequence
                )


def _run(first_id: int) -> market_pb2.SymbolTrades:
    return flat_run("ETHUSDT", list(range(first_id, first_id + TRADES_PER_BATCH)))


async def test_batch_span_ends_on_ack_and_resends_carry_the_original_context() -> None:
    servicer = RecordingIngest()
    server = aio.server()
    ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = IngestClient(
        IngestConfig(
            address=f"127.0.0.1:{port}",
            stream_id="tracing-test",
            max_batch_trades=TRADES_PER_BATCH,
            max_batch_delay_s=0.0,
            reconnect_initial_s=0.01,
            reconnect_max_s=0.05,
        ),
        CollectorMetrics(CollectorRegistry()),
        # The channel traces its calls too: the long-lived Publish call's span must not
        # become the parent of the batches (each batch is a trace of its own).
        channel_factory=lambda address: open_channel(address, tracer_provider=provider),
        tracer=get_tracer(provider),
    )
    client.submit(_run(i * TRADES_PER_BATCH) for i in range(BATCHES))
    runner = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(30):
            await client.flush()
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await server.stop(None)
    spans: dict[int, ReadableSpan] = {}
    for span in exporter.get_finished_spans():
        if span.name == "/tickmesh.v2.IngestService/Publish":
            continue  # the calls' own client spans
        attributes = dict(span.attributes or {})
        assert span.name == "collector.publish_batch"
        assert attributes["tickmesh.trade_count"] == TRADES_PER_BATCH
        spans[int(str(attributes["tickmesh.sequence"]))] = span
    assert sorted(spans) == list(range(1, BATCHES + 1))  # one span per batch, ended on its ack
    assert all(len(servicer.contexts[sequence]) == 2 for sequence in (1, 2, 3))  # resent
    for sequence, span in spans.items():
        assert span.context is not None
        assert set(servicer.contexts[sequence]) == {traceparent(span.context)}
    assert len({span.context.trace_id for span in spans.values() if span.context}) == BATCHES
    assert all(span.parent is None for span in spans.values())
    calls = [s for s in exporter.get_finished_spans() if s.name.endswith("IngestService/Publish")]
    assert len(calls) >= 1  # the aborted call's span (the live one ends with the client)
