"""`/health` (liveness) and `/api/v1/health` (every dependency, with latency)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends

from tickmesh.gateway.backends import BackendHealth
from tickmesh.gateway.deps import GatewayServices, ServicesDep, rate_limited
from tickmesh.gateway.schemas import ComponentHealth, HealthOut, SourceHealth

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

_PROBE_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def liveness() -> dict[str, str]:
    """Liveness: the gateway process answers (dependencies are not asked)."""
    return {"status": "ok"}


async def _probe(check: Callable[[], Awaitable[object]]) -> ComponentHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), _PROBE_TIMEOUT_SECONDS)
    except Exception as error:  # any failure of a probe is that component's state, not ours
        latency = (time.perf_counter() - started) * 1000
        return ComponentHealth(
            status="unreachable", latency_ms=latency, detail=type(error).__name__
        )
    return ComponentHealth(status="serving", latency_ms=(time.perf_counter() - started) * 1000)


def _component(health: BackendHealth) -> ComponentHealth:
    return ComponentHealth(status=health.status, latency_ms=health.latency_ms, detail=health.detail)


async def _sources(services: GatewayServices) -> list[SourceHealth]:
    """The collector's source states; none when Redis cannot be read (its probe says why)."""
    try:
        return await asyncio.wait_for(services.source_health.read(), _PROBE_TIMEOUT_SECONDS)
    except Exception as error:  # Redis down shows as the redis component, not as a 500
        log.warning("source health not read: %s", type(error).__name__)
        return []


@router.get("/api/v1/health", dependencies=[Depends(rate_limited("api"))])
async def mesh_health(services: ServicesDep) -> HealthOut:
    """Each gRPC service's grpc.health.v1 status, PostgreSQL and Redis, probed concurrently,
    and each market-data source as the collector reports it (up, connecting, unreachable, …).
    """
    backends = services.backends.all()
    grpc_results, postgres, redis_health, sources = await asyncio.gather(
        asyncio.gather(*(backend.health() for backend in backends)),
        _probe(lambda: services.pool.fetchval("SELECT 1")),
        _probe(services.redis_ping),
        _sources(services),
    )
    components = {
        backend.name: _component(result)
        for backend, result in zip(backends, grpc_results, strict=True)
    }
    components["postgresql"] = postgres
    components["redis"] = redis_health
    healthy = all(component.status == "serving" for component in components.values())
    return HealthOut(status="ok" if healthy else "degraded", components=components, sources=sources)
