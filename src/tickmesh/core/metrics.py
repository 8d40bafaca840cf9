"""Prometheus metrics: one registry per service process, served on its own /metrics port."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class CoreMetrics:
    """Metrics every service exposes: RPCs, dependency start-up attempts, database writes."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.grpc_requests = Counter(
            "tickmesh_grpc_server_requests",
            "gRPC requests handled, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.grpc_latency = Histogram(
            "tickmesh_grpc_server_latency_seconds",
            "gRPC unary handling time (streams: time to end of stream).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.grpc_denied = Counter(
            "tickmesh_grpc_server_denied",
            "gRPC calls refused because the caller's role may not call the service.",
            ["role", "service"],
            registry=self.registry,
        )
        self.dependency_attempts = Counter(
            "tickmesh_dependency_connect_attempts",
            "Attempts to reach a dependency at start, by dependency and outcome.",
            ["dependency", "outcome"],
            registry=self.registry,
        )
        self.db_write_latency = Histogram(
            "tickmesh_db_write_latency_seconds",
            "Time of one bulk database write, by table.",
            ["table"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.db_rows_written = Counter(
            "tickmesh_db_rows_written",
            "Rows upserted, by table.",
            ["table"],
            registry=self.registry,
        )


class MetricsServer:
    """The /metrics HTTP endpoint of one process, on a background thread."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
        self._registry = registry
        self._port = port
        self._host = host
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        if self._server is None:
            return self._port
        return int(self._server.server_port)

    def start(self) -> None:
        """Start serving; port 0 picks a free one."""
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._registry
        )
        log.info("metrics listening", extra={"port": self.port})

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
