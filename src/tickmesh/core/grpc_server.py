"""The gRPC server every service runs: health, reflection, interceptors and a graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import health_check, negate
from opentelemetry.trace import TracerProvider

from tickmesh.core.caller_authorization import CallerAuthorization
from tickmesh.core.grpc_interceptors import StatusInterceptor
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.roles import ALLOWED_CALLERS
from tickmesh.core.tls import TlsMaterial

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ServiceRegistration:
    """One servicer: its full proto name, the generated add_…_to_server function, the instance."""

    name: str
    add_to_server: Callable[[Any, aio.Server], None]
    servicer: object


_SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class GrpcServer:
    """A grpc.aio server with health and reflection; start(), then wait() or stop().

    With `tls` it serves mutual TLS only and admits each call by its caller's role
    (tickmesh.core.roles.ALLOWED_CALLERS); without, plaintext for in-process tests.
    `health_listen` adds a plaintext listener with grpc.health.v1.Health alone, for
    probes that cannot present a client certificate.
    """

    def __init__(
        self,
        listen: str,
        registrations: Sequence[ServiceRegistration],
        metrics: CoreMetrics,
        drain_seconds: float = 5.0,
        tracer_provider: TracerProvider | None = None,
        *,
        tls: TlsMaterial | None = None,
        health_listen: str = "",
        reflection: bool = True,
    ) -> None:
        self._listen = listen
        self._registrations = list(registrations)
        self._drain_seconds = drain_seconds
        self._tls = tls
        self._health_listen = health_listen
        self._reflection = reflection
        interceptors: list[aio.ServerInterceptor] = [
            # Starts each call's server span as a child of the caller's traceparent;
            # health probes (every few seconds, from every prober) are not traced.
            aio_server_interceptor(  # type: ignore[no-untyped-call]
                tracer_provider, filter_=negate(health_check())
            ),
            StatusInterceptor(metrics),
        ]
        if tls is not None:
            # Inside StatusInterceptor, so refusals are counted with their status code too.
            interceptors.append(CallerAuthorization(ALLOWED_CALLERS, metrics))
        self._server = aio.server(interceptors=interceptors, options=_SERVER_OPTIONS)
        self._health = health.aio.HealthServicer()
        self._health_server: aio.Server | None = None
        self._health_port = 0
        self._port = 0
        self._stopped = asyncio.Event()

    @property
    def port(self) -> int:
        """The bound port."""
        return self._port

    @property
    def address(self) -> str:
        """host:port clients can dial."""
        return _dialable(self._listen, self._port)

    @property
    def health_address(self) -> str | None:
        """host:port of the plaintext health listener, if there is one."""
        return _dialable(self._health_listen, self._health_port) if self._health_port else None

    async def start(self) -> None:
        """Bind, register everything and mark every service SERVING."""
        for registration in self._registrations:
            registration.add_to_server(registration.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = [r.name for r in self._registrations]
        if self._reflection:
            reflection.enable_server_reflection(
                [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
            )
        if self._tls is None:
            self._port = self._server.add_insecure_port(self._listen)
        else:
            self._port = self._server.add_secure_port(self._listen, self._tls.server_credentials())
        if self._port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        if self._health_listen:
            await self._start_health_listener()
        await self._server.start()
        for name in ["", *names]:
            await self._health.set(name, SERVING)
        log.info(
            "grpc serving",
            extra={
                "address": self.address,
                "services": names,
                "tls": self._tls is not None,
                "reflection": self._reflection,
                "health_address": self.health_address,
            },
        )

    async def _start_health_listener(self) -> None:
        """Plaintext Health alone: it tells a prober SERVING or not, and nothing else."""
        server = aio.server(options=_SERVER_OPTIONS)
        # The same servicer: the probe sees what the mesh sees, draining included.
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self._health_port = server.add_insecure_port(self._health_listen)
        if self._health_port == 0:
            raise OSError(f"cannot listen on {self._health_listen}")
        await server.start()
        self._health_server = server

    async def stop(self) -> None:
        """Drain: report NOT_SERVING, let calls finish for the grace period, then stop."""
        if self._stopped.is_set():
            return
        await self._health.enter_graceful_shutdown()
        log.info("grpc draining", extra={"grace_seconds": self._drain_seconds})
        await self._server.stop(self._drain_seconds)
        if self._health_server is not None:
            await self._health_server.stop(0)
        self._stopped.set()

    async def wait(self) -> None:
        """Wait until stop() has finished."""
        await self._stopped.wait()


def _dialable(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "[::]", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


async def run_until_signalled(server: GrpcServer, on_stop: Callable[[], Any] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain the server and call `on_stop`."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        await stop_requested.wait()
        log.info("stop requested")
        await server.stop()
        if on_stop is not None:
            result = on_stop()
            if asyncio.iscoroutine(result):
                await result
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
