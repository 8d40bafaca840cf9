"""OpenTelemetry tracing set up from the standard OTEL_* variables."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)


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
    """Install a tracer provider for `service`; spans are exported only when OTEL_* asks."""
    name = os.environ.get("OTEL_SERVICE_NAME") or f"tickmesh-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true":
        exporter = _exporter_from_environment()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
