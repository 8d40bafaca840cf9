"""Client channels to other services: keepalive, built-in retries for unary calls, tracing."""

from __future__ import annotations

import json

from grpc import aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.grpc.filters import health_check, negate
from opentelemetry.trace import TracerProvider

from tickmesh.core.tls import TlsMaterial

# gRPC retries idempotent unary calls itself (exponential backoff with jitter); streams are
# resumed by their owners, which know their resume points.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "tickmesh.v2.BarService", "method": "GetBars"},
                    {"service": "tickmesh.v2.SymbolService", "method": "ListSymbols"},
                    {"service": "tickmesh.v2.AnalyticsService", "method": "GetIndicators"},
                    {"service": "tickmesh.v2.AnalyticsService", "method": "GetFeatures"},
                    {"service": "tickmesh.v2.AnalyticsService", "method": "GetQuality"},
                    {"service": "grpc.health.v1.Health", "method": "Check"},
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


_CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def open_channel(
    address: str,
    tracer_provider: TracerProvider | None = None,
    tls: TlsMaterial | None = None,
) -> aio.Channel:
    """Open a channel to `address` (host:port) with keepalive, unary retries, tracing.

    With `tls` it is mutual TLS: the server must hold a certificate of the mesh's CA for the
    host dialled, and this process presents its own certificate as its identity. Without,
    plaintext (a process started with TICKMESH_GRPC_INSECURE, or an in-process test).
    """
    # Injects the current span's traceparent into every call's metadata (health probes
    # are not traced).
    interceptors = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider, filter_=negate(health_check())
    )
    if tls is None:
        return aio.insecure_channel(address, options=_CHANNEL_OPTIONS, interceptors=interceptors)
    return aio.secure_channel(
        address, tls.channel_credentials(), options=_CHANNEL_OPTIONS, interceptors=interceptors
    )
