"""The life of a gRPC service process: settings, logs, traces, metrics, storage, server, drain."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis

from tickmesh.core.cache import open_redis
from tickmesh.core.db.migrations import migrate_pool
from tickmesh.core.db.pool import open_pool
from tickmesh.core.errors import Unavailable
from tickmesh.core.grpc_server import GrpcServer, ServiceRegistration, run_until_signalled
from tickmesh.core.logs import configure_logging
from tickmesh.core.metrics import CoreMetrics, MetricsServer
from tickmesh.core.settings import CommonSettings, SettingsError
from tickmesh.core.tls import TlsMaterial, mesh_tls
from tickmesh.core.tracing import configure_tracing

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """What a service's wiring gets: its dependencies, opened and ready."""

    settings: CommonSettings
    metrics: CoreMetrics
    pool: asyncpg.Pool
    redis: redis.Redis
    exit_stack: AsyncExitStack
    # This process's mesh certificate, for its server and for its channels to other
    # services; None when it runs plaintext (TICKMESH_GRPC_INSECURE, tests only).
    tls: TlsMaterial | None = None


Wiring = Callable[[ServiceContext], Awaitable[Sequence[ServiceRegistration]]]


async def open_context(
    settings: CommonSettings,
    metrics: CoreMetrics,
    stack: AsyncExitStack,
    tls: TlsMaterial | None = None,
) -> ServiceContext:
    """Open PostgreSQL (migrated) and Redis, closing both when `stack` closes."""
    pool = await open_pool(
        settings.database_url,
        metrics,
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        give_up_after_seconds=settings.startup_retry_seconds,
    )
    stack.push_async_callback(pool.close)
    applied = await migrate_pool(pool)
    if applied:
        log.info("migrations applied", extra={"versions": applied})
    client = await open_redis(settings.redis_url, metrics, settings.startup_retry_seconds)
    stack.push_async_callback(client.aclose)
    return ServiceContext(settings, metrics, pool, client, stack, tls)


async def serve(
    service: str,
    settings: CommonSettings,
    listen: str,
    metrics_port: int,
    wiring: Wiring,
    tls: TlsMaterial | None = None,
) -> None:
    """Run one service until SIGTERM/SIGINT, then drain and close everything."""
    metrics = CoreMetrics()
    metrics_server = MetricsServer(metrics.registry, metrics_port, settings.metrics_host)
    metrics_server.start()
    try:
        async with AsyncExitStack() as stack:
            context = await open_context(settings, metrics, stack, tls)
            registrations = await wiring(context)
            server = GrpcServer(
                listen,
                registrations,
                metrics,
                settings.drain_seconds,
                tls=tls,
                health_listen=settings.grpc_health_listen,
                # Reflection maps the whole API for whoever asks: handy on a laptop, a gift
                # to an intruder in production.
                reflection=settings.environment != "production",
            )
            await server.start()
            await run_until_signalled(server)
    finally:
        metrics_server.stop()


def main_for(
    service: str,
    settings: CommonSettings,
    listen: str,
    metrics_port: int,
    wiring: Wiring,
) -> None:
    """Process entry point: configure logs and traces, serve, exit 1 with one line if a dependency is down.

    Exits 2 with one line when the process has no TLS material and may not run plaintext.
    """
    tls = mesh_tls_or_exit(settings)
    configure_logging(service, settings.log_level)
    provider = configure_tracing(service)
    try:
        asyncio.run(serve(service, settings, listen, metrics_port, wiring, tls))
    except Unavailable as error:
        log.error("cannot start: %s", error)
        raise SystemExit(1) from None
    finally:
        provider.shutdown()


def mesh_tls_or_exit(settings: CommonSettings) -> TlsMaterial | None:
    """The process's TLS material, or one line naming the setting and exit status 2."""
    try:
        return mesh_tls(settings)
    except SettingsError as error:
        sys.stderr.write(f"tickmesh: invalid setting: {error}\n")
        raise SystemExit(2) from None
