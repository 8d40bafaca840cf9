"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tickmesh.gateway.settings import GatewaySettings

from tickmesh.core.metrics import CoreMetrics


def create_app(settings: GatewaySettings, metrics: CoreMetrics) -> FastAPI:
    """Build the gateway app from its settings and metrics registry."""
    app = FastAPI(title="tickmesh gateway", version="0.1.0")

    @app.get("/health", tags=["health"])
    async def liveness() -> dict[str, str]:
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus exposition of this process's registry."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
