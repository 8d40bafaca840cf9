"""The FastAPI application factory: routes, problem handlers, CORS, metrics; no globals."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tickmesh.gateway.body_limit import BodySizeLimit
from tickmesh.gateway.deps import GatewayServices
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.problems import install_problem_handlers
from tickmesh.gateway.query_redaction import redact_span_urls
from tickmesh.gateway.routes import (
    alerts,
    auth,
    charts,
    datasets,
    health,
    replay,
    symbols,
    users,
    ws,
)

DESCRIPTION = """REST API of the tickmesh market-data mesh.

Sign in with `POST /api/v1/auth/login`, then send `Authorization: Bearer <access_token>`.
Errors are `application/problem+json` documents (type, title, status, detail).
Every client gets a token bucket per route class (RateLimit-* headers on each answer).
Instruments are written "<venue>:<symbol>" everywhere: `binance_usdm:BTCUSDT` is the
Binance USD-M perpetual, `binance_spot:BTCUSDT` spot, `yahoo:AAPL` a stock through Yahoo
(e.g. `GET /api/v1/charts/binance_usdm:BTCUSDT?timeframe=1m`).
Prices and volumes are exact decimal strings ("61700.8", "203.143"), equal to the venue's
own values; vwap, indicators, features and quality scores are numbers.
Live bars: WebSocket `/ws/{instrument}`, then send `{"type": "auth", "token": "<access_token>"}`
(`?token=<access_token>` also works outside production; it is redacted from logs and traces).
Request bodies are limited in size (413 beyond). `POST /api/v1/auth/password` changes the
caller's password and ends all of its sessions.
"""


def _route_template(request: Request) -> str:
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"  # one label for every unknown path, so scanners cannot blow up cardinality


class RequestMetrics:
    """Counts and times every HTTP request by route template.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware (`@app.middleware`) re-streams
    each response body through a task and a memory stream, a real cost on 100 kB chart answers.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            request = Request(scope)
            route = _route_template(request)
            self._metrics.http_requests.labels(request.method, route, str(status)).inc()
            self._metrics.http_latency.labels(route).observe(time.perf_counter() - started)


def create_app(services: GatewayServices, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build the gateway app around its wired services; with a tracer provider, trace requests."""
    app = FastAPI(
        title="tickmesh gateway",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.services = services
    install_problem_handlers(app)
    if services.settings.gateway_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=services.settings.gateway_cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
        )
    metrics = services.metrics
    app.add_middleware(BodySizeLimit, max_body_bytes=services.settings.gateway_max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    trusted = services.settings.gateway_trusted_proxies
    if trusted:
        # uvicorn's own handling, applied here rather than by uvicorn so that one setting
        # decides it and the in-process tests see it. It walks X-Forwarded-For from the right
        # and takes the first address that is not a trusted proxy: what a client writes to
        # the left of that cannot choose its rate-limit bucket. Outermost, so that everything
        # below sees the client. (__main__ turns uvicorn's default, trusting 127.0.0.1, off.)
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)

    for module in (health, auth, users, symbols, alerts, charts, datasets, ws, replay):
        app.include_router(module.router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus exposition of this process's registry."""
        return Response(generate_latest(metrics.core.registry), media_type=CONTENT_TYPE_LATEST)

    if tracer_provider is not None:
        # A server span per request and per WebSocket connection, never per WebSocket message
        # (the pushes have spans of their own, one per upstream update for all clients).
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracer_provider,
            excluded_urls="/health,/metrics",
            exclude_spans=["receive", "send"],
            server_request_hook=redact_span_urls,  # `?token=` stays out of http.url et al.
        )
    static_dir = services.settings.gateway_static_dir
    if static_dir:
        # Mounted last: the API, the WebSocket, /health, /docs and /metrics take precedence.
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="dashboard")
    return app
