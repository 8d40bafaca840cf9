"""Building the gateway's services from settings: storage, keys, limits, backends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import asyncpg
import redis.asyncio as redis
from argon2 import PasswordHasher

from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.runtime import open_context
from tickmesh.core.tls import TlsMaterial
from tickmesh.gateway.accounts import Accounts
from tickmesh.gateway.admin_bootstrap import bootstrap_admin
from tickmesh.gateway.alerts.broadcast import AlertBroadcast
from tickmesh.gateway.alerts.channels import AlertChannels
from tickmesh.gateway.alerts.cursor import AlertCursor
from tickmesh.gateway.alerts.delivery import AlertDeliveries
from tickmesh.gateway.alerts.engine import AlertEngine
from tickmesh.gateway.alerts.feed import AlertFeed
from tickmesh.gateway.alerts.store import AlertStore
from tickmesh.gateway.alerts.supervision import supervise
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.bar_json import PushEncoder
from tickmesh.gateway.chart_cache import ChartCache
from tickmesh.gateway.deps import GatewayServices
from tickmesh.gateway.fanout import BarFanout
from tickmesh.gateway.indicator_fanout import IndicatorFanout
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.passwords import Passwords
from tickmesh.gateway.rate_limit import RateLimiter
from tickmesh.gateway.settings import GatewaySettings
from tickmesh.gateway.source_health import SourceHealthReader
from tickmesh.gateway.tokens import KeyRing
from tickmesh.gateway.ws_feeds import InstrumentFeeds
from tickmesh.gateway.ws_guard import WsGuard

log = logging.getLogger(__name__)


def build_services(
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    pool: asyncpg.Pool,
    redis_client: redis.Redis,
    password_hasher: PasswordHasher | None = None,
    rate_limit_prefix: str = "",
    tls: TlsMaterial | None = None,
) -> GatewayServices:
    """Wire the services on an open pool and Redis client (the caller closes them)."""
    backends = Backends(
        settings.collector_address,
        settings.bar_shard_addresses,
        settings.analytics_shard_addresses,
        settings.gateway_backend_timeout_seconds,
        tls,
    )
    limits = {
        "api": settings.gateway_rate_limit_per_minute,
        "auth": settings.gateway_auth_rate_limit_per_minute,
        "login": settings.gateway_login_attempts_per_minute,
        "ws": settings.gateway_rate_limit_per_minute,
    }

    async def redis_ping() -> object:
        return await redis_client.ping()

    alert_feed = AlertFeed()
    chart_cache = ChartCache(backends, metrics, settings.gateway_chart_cache_bytes)
    return GatewayServices(
        settings=settings,
        metrics=metrics,
        pool=pool,
        keyring=KeyRing.from_settings(settings),
        accounts=Accounts(
            pool,
            Passwords(password_hasher, settings.gateway_password_hash_concurrency),
            timedelta(days=settings.gateway_refresh_token_days),
            timedelta(days=settings.gateway_refresh_family_max_days),
        ),
        alerts=AlertStore(
            pool, settings.gateway_alerts_per_user, settings.gateway_alert_min_cooldown_seconds
        ),
        backends=backends,
        rate_limiter=RateLimiter(redis_client, limits, metrics, rate_limit_prefix),
        redis_ping=redis_ping,
        alert_cursor=AlertCursor(redis_client),
        fanout=BarFanout(backends, metrics, on_bar=chart_cache.bar_changed),
        alert_feed=alert_feed,
        alert_broadcast=AlertBroadcast(redis_client, alert_feed, metrics),
        indicator_fanout=IndicatorFanout(backends, metrics),
        chart_cache=chart_cache,
        ws_feeds=InstrumentFeeds(
            PushEncoder(),
            settings.gateway_ws_update_seconds,
            metrics.ws_messages.labels(type="bars"),
        ),
        ws_guard=WsGuard.build(settings, metrics, pool, backends),
        source_health=SourceHealthReader(redis_client),
    )


async def open_services(
    settings: GatewaySettings,
    core_metrics: CoreMetrics,
    stack: AsyncExitStack,
    tls: TlsMaterial | None = None,
) -> GatewayServices:
    """Open PostgreSQL (migrated) and Redis with retries, wire everything; `stack` closes it all."""
    context = await open_context(settings, core_metrics, stack, tls)
    services = build_services(
        settings, GatewayMetrics(core_metrics), context.pool, context.redis, tls=tls
    )
    stack.push_async_callback(services.backends.close)
    stack.push_async_callback(services.fanout.close)
    stack.push_async_callback(services.indicator_fanout.close)
    stack.push_async_callback(services.chart_cache.close)
    if settings.gateway_admin_username and settings.gateway_admin_password:
        await bootstrap_admin(
            services.accounts,
            settings.gateway_admin_username,
            settings.gateway_admin_password.get_secret_value(),
            reset=settings.gateway_admin_reset,
        )
    _run_in_background(services.alert_broadcast.run(), "alert-broadcast", stack)
    if settings.gateway_alerts_enabled:
        await _start_alert_engine(services, stack)
    return services


def _run_in_background(work: Coroutine[Any, Any, None], name: str, stack: AsyncExitStack) -> None:
    """Run `work` beside the HTTP server; the stack cancels it on shutdown."""
    task = asyncio.create_task(work, name=name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


async def _start_alert_engine(services: GatewayServices, stack: AsyncExitStack) -> None:
    """Run the alert engine beside the HTTP server; the stack cancels it first on shutdown."""
    channels = AlertChannels(services.settings, services.metrics)
    stack.push_async_callback(channels.close)
    deliveries = AlertDeliveries(
        services.pool,
        services.alerts,
        channels,
        services.settings,
        services.metrics,
    )
    engine = AlertEngine(
        services.alerts,
        services.fanout,
        services.backends,
        deliveries.wake,
        services.metrics,
        services.alert_broadcast.publish,
        services.alert_cursor,
        services.settings.gateway_alert_refresh_seconds,
    )
    # Supervised: a worker that dies would otherwise stop every user's alerts unseen.
    metrics = services.metrics
    _run_in_background(
        supervise("alert-deliveries", deliveries.run, metrics), "alert-deliveries", stack
    )
    _run_in_background(supervise("alert-engine", engine.run, metrics), "alert-engine", stack)
