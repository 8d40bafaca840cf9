"""The life of a gRPC service process: settings, logs, traces, metrics, storage, server, drain."""

from __future__ import annotations

import asyncio
import logging
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
from tickmesh.core.settings import CommonSettings
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


Wiring = Callable[[ServiceContext], Awaitable[Sequence[ServiceRegistration]]]


async def open_context(
    settings: CommonSettings, metrics: CoreMetrics, stack: AsyncExitStack
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
    return ServiceContext(settings, metrics, pool, client, stack)


async def serve(
    service: str, settings: CommonSettings, listen: str, metrics_port: int, wiring: Wiring
) -> None:
    """Run one service until SIGTERM/SIGINT, then drain and close everything."""
    metrics = CoreMetrics()
    metrics_server = MetricsServer(metrics.registry, metrics_port, settings.metrics_host)
    metrics_server.start()
    try:
        async with AsyncExitStack() as stack:
            context = await open_context(settings, metrics, stack)
            registrations = await wiring(context)
            server = GrpcServer(listen, registrations, metrics, settings.drain_seconds)
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
    """Process entry point: configure logs and traces, serve, exit 1 with one line if a dependency is down."""
    configure_logging(service, settings.log_level)
    provider = configure_tracing(service)
    try:
        asyncio.run(serve(service, settings, listen, metrics_port, wiring))
    except Unavailable as error:
        log.error("cannot start: %s", error)
        raise SystemExit(1) from None
    finally:
        provider.shutdown()
