"""One trace through the real mesh: collector batch -> bars -> analytics -> WebSocket push.

The bar, analytics and gateway processes export their spans with OTLP to an in-memory
receiver this test runs; the collector side is the collector's own IngestClient, traced into
an in-memory exporter. One trade batch finalises a bar; its trace must hold the batch span,
the bar service's apply span (its child), the analytics bar span (the apply span's child) and
the gateway's indicator push span (the analytics span's child), and the WebSocket client must
receive the indicator row with that push span's traceparent; the bar itself is pushed in a
gateway span under the apply span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from grpc import aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection

from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.core.tracing import TRACEPARENT, get_tracer
from tickmesh.v2 import market_pb2

from .gateway.processes import GatewayProcess, bars_analytics_gateway, register
from .ingest_helpers import NS_PER_MS, final_minute_trades
from .mesh_processes import ServiceProcess

MINUTE_NS = 60 * 1_000_000_000
START_NS = int(datetime(2024, 1, 2, tzinfo=UTC).timestamp()) * 1_000_000_000
WITHIN_SECONDS = 30.0


@dataclass
class ReceivedSpan:
    """One span as a process exported it, with its service's name."""

    service: str
    span: trace_pb2.Span

    @property
    def span_id(self) -> int:
        """The span id as an integer."""
        return int.from_bytes(self.span.span_id, "big")

    @property
    def trace_id(self) -> int:
        """The trace id as an integer."""
        return int.from_bytes(self.span.trace_id, "big")

    @property
    def parent_id(self) -> int:
        """The parent span id as an integer (0 for a root)."""
        return int.from_bytes(self.span.parent_span_id, "big")


@dataclass
class SpanReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps every exported span in memory."""

    spans: list[ReceivedSpan] = field(default_factory=list)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """Keep the spans of every resource."""
        for resource_spans in request.resource_spans:
            service = next(
                (
                    attribute.value.string_value
                    for attribute in resource_spans.resource.attributes
                    if attribute.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(ReceivedSpan(service, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    async def wait_for(self, matches: Callable[[ReceivedSpan], bool], what: str) -> ReceivedSpan:
        """The first received span that `matches`, waited for up to WITHIN_SECONDS."""
        deadline = time.monotonic() + WITHIN_SECONDS
        while True:
            found = [span for span in self.spans if matches(span)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                names = sorted({(s.service, s.span.name) for s in self.spans})
                raise AssertionError(f"no span {what} among {names}")
            await asyncio.sleep(0.1)


@dataclass
class TracedMesh:
    """The traced processes, the receiver and an admin's header."""

    bars: ServiceProcess
    analytics: ServiceProcess
    gateway: GatewayProcess
    receiver: SpanReceiver
    headers: dict[str, str]


@pytest.fixture
async def mesh(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> AsyncIterator[TracedMesh]:
    """Bars, analytics and a gateway, each exporting spans to one in-memory OTLP receiver."""
    receiver = SpanReceiver()
    server = aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    try:
        async with bars_analytics_gateway(
            fresh_database_url, fresh_redis_url, tmp_path / "gateway.log", otel
        ) as running:
            yield TracedMesh(
                running.bars, running.analytics, running.gateway, receiver, running.headers
            )
    finally:
        await server.stop(0)


def _trades(symbol: str) -> market_pb2.SymbolTrades:
    """Three trades in minute 0 and one in minute 3: minute 0's bar is final at once."""
    return final_minute_trades(symbol, START_NS // NS_PER_MS, closing_offset_ms=3 * 60_000)


async def _publish(address: str, symbol: str, exporter: InMemorySpanExporter) -> ReadableSpan:
    """Publish one batch with the collector's traced ingest client; its finished batch span."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = IngestClient(
        IngestConfig(address, f"trace-{symbol}"),
        CollectorMetrics(CollectorRegistry()),
        tracer=get_tracer(provider),
    )
    runner = asyncio.create_task(client.run())
    try:
        client.submit([_trades(symbol)])
        async with asyncio.timeout(WITHIN_SECONDS):
            await client.flush()
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    (span,) = exporter.get_finished_spans()  # ended on acknowledgement
    assert span.name == "collector.publish_batch"
    return span


@dataclass
class Pushed:
    """What the WebSocket client received: 1m bars by (time, final), indicator rows by time."""

    bars: dict[tuple[int, bool], dict[str, Any]] = field(default_factory=dict)
    indicators: dict[int, dict[str, Any]] = field(default_factory=dict)


async def _pushed(ws: ClientConnection) -> Pushed:
    """Read until minute 0's final 1m bar, its indicator row and minute 3's forming bar came."""
    minute = START_NS // 1_000_000_000
    pushed = Pushed()
    deadline = time.monotonic() + WITHIN_SECONDS
    while (
        (minute, True) not in pushed.bars
        or (minute + 180, False) not in pushed.bars
        or (minute not in pushed.indicators)
    ):
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message.get("timeframe") != "1m":
            continue
        if message["type"] == "bars":
            pushed.bars.update({(bar["time"], bar["final"]): bar for bar in message["bars"]})
        elif message["type"] == "indicators":
            pushed.indicators[message["indicators"]["time"]] = message
    return pushed


def _span_with_id(span_id: int) -> Callable[[ReceivedSpan], bool]:
    """A span matcher by span id."""
    return lambda span: span.span_id == span_id


def _ids(traceparent: str) -> tuple[int, int]:
    """(trace id, span id) of a W3C traceparent."""
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16)


async def test_one_trace_follows_a_trade_batch_from_collector_to_the_websocket_push(
    mesh: TracedMesh,
) -> None:
    symbol = f"TR{secrets.token_hex(3).upper()}"
    await register(mesh.gateway.base_url, mesh.headers, f"simulator:{symbol}")
    token = mesh.headers["Authorization"].removeprefix("Bearer ")
    url = (
        mesh.gateway.base_url.replace("http://", "ws://") + f"/ws/simulator:{symbol}?token={token}"
    )
    exporter = InMemorySpanExporter()
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        batch_span = await _publish(mesh.bars.address, symbol, exporter)
        pushed = await _pushed(ws)
    minute = START_NS // 1_000_000_000

    trace_id = batch_span.context.trace_id
    # The bar service applied the batch in a child of the collector's batch span.
    applied = await mesh.receiver.wait_for(
        lambda s: s.span.name == "bars.apply_batch" and s.parent_id == batch_span.context.span_id,
        "bars.apply_batch under the collector's batch span",
    )
    assert applied.service == "tickmesh-bars"
    assert applied.trace_id == trace_id
    # Its commit is a trace of its own that links the batch it made durable.
    await mesh.receiver.wait_for(
        lambda s: (
            s.span.name == "bars.commit"
            and any(int.from_bytes(link.span_id, "big") == applied.span_id for link in s.span.links)
        ),
        "bars.commit linking the apply span",
    )
    # The gateway pushed the indicator row in the span the WebSocket message names; it is a
    # child of the analytics span that computed the row, itself a child of the apply span.
    indicators_trace, indicators_span = _ids(pushed.indicators[minute][TRACEPARENT])
    assert indicators_trace == trace_id
    push = await mesh.receiver.wait_for(
        lambda s: s.span_id == indicators_span, "of the indicator message's traceparent"
    )
    assert (push.service, push.span.name) == ("tickmesh-gateway", "gateway.push_indicators")
    analysed = await mesh.receiver.wait_for(
        lambda s: s.span_id == push.parent_id, "parent of the indicator push"
    )
    assert (analysed.service, analysed.span.name) == ("tickmesh-analytics", "analytics.process_bar")
    assert analysed.parent_id == applied.span_id
    assert analysed.trace_id == trace_id
    # The bars themselves, final and forming, were fanned out in gateway spans under it too.
    for key in ((minute, True), (minute + 180, False)):
        bar_trace, bar_span = _ids(pushed.bars[key][TRACEPARENT])
        assert bar_trace == trace_id
        fanned_out = await mesh.receiver.wait_for(
            _span_with_id(bar_span), f"of the bar {key}'s traceparent"
        )
        assert (fanned_out.service, fanned_out.span.name) == (
            "tickmesh-gateway",
            "gateway.push_bar",
        )
        assert fanned_out.parent_id == applied.span_id


async def test_gateway_traces_each_request_but_not_each_websocket_message(
    mesh: TracedMesh,
) -> None:
    login_span = await mesh.receiver.wait_for(
        lambda s: s.service == "tickmesh-gateway" and s.span.name == "POST /api/v1/auth/login",
        "of the fixture's login request",
    )
    assert login_span.span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    token = mesh.headers["Authorization"].removeprefix("Bearer ")
    await register(mesh.gateway.base_url, mesh.headers, "simulator:TRACEWS")
    url = mesh.gateway.base_url.replace("http://", "ws://") + f"/ws/simulator:TRACEWS?token={token}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        while json.loads(await ws.recv())["type"] != "pong":
            pass
    await mesh.receiver.wait_for(
        lambda s: s.service == "tickmesh-gateway" and s.span.name == "HTTP /ws/{instrument}",
        "of the WebSocket connection",
    )
    per_message = [s.span.name for s in mesh.receiver.spans if "websocket" in s.span.name]
    assert per_message == []
    probes = [s.span.name for s in mesh.receiver.spans if "grpc.health" in s.span.name]
    assert probes == []
