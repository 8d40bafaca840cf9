"""FastAPI dependencies: the wired services, the caller, role checks and rate limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from tickmesh.core.errors import PermissionDenied, Unauthenticated
from tickmesh.gateway.accounts import Accounts, User
from tickmesh.gateway.alerts.broadcast import AlertBroadcast
from tickmesh.gateway.alerts.cursor import AlertCursor
from tickmesh.gateway.alerts.feed import AlertFeed
from tickmesh.gateway.alerts.store import AlertStore
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.chart_cache import ChartCache
from tickmesh.gateway.fanout import BarFanout
from tickmesh.gateway.indicator_fanout import IndicatorFanout
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.problems import RateLimited
from tickmesh.gateway.rate_limit import RateLimiter
from tickmesh.gateway.settings import GatewaySettings
from tickmesh.gateway.source_health import SourceHealthReader
from tickmesh.gateway.tokens import KeyRing, Role
from tickmesh.gateway.ws_feeds import InstrumentFeeds

ROLE_RANK: dict[Role, int] = {"viewer": 0, "trader": 1, "admin": 2}


@dataclass
class GatewayServices:
    """Everything the routes use, built once per app by the wiring and passed in."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    pool: asyncpg.Pool
    keyring: KeyRing
    accounts: Accounts
    alerts: AlertStore
    backends: Backends
    rate_limiter: RateLimiter
    redis_ping: Callable[[], Awaitable[object]]
    alert_cursor: AlertCursor
    fanout: BarFanout
    alert_feed: AlertFeed
    alert_broadcast: AlertBroadcast
    indicator_fanout: IndicatorFanout
    chart_cache: ChartCache
    ws_feeds: InstrumentFeeds
    source_health: SourceHealthReader


def get_services(connection: HTTPConnection) -> GatewayServices:
    """The services the app was built with."""
    services: GatewayServices = connection.app.state.services
    return services


async def _services(connection: HTTPConnection) -> GatewayServices:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a hop per request.
    return get_services(connection)


ServicesDep = Annotated[GatewayServices, Depends(_services)]

# auto_error=False: a missing header becomes our own 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/login.")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_user(services: ServicesDep, credentials: BearerDep) -> User:
    """The caller of a valid access token, re-read so a disabled or demoted user loses access.

    The row is reused for `gateway_user_cache_seconds` (2 s by default): that bounds how long
    a change made through another replica takes to apply; this replica's own changes apply at
    once.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer access token")
    claims = services.keyring.verify_access_token(credentials.credentials)
    return await services.accounts.active_user(claims, services.settings.gateway_user_cache_seconds)


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(minimum: Role) -> Callable[[User], Awaitable[User]]:
    """A dependency admitting users of `minimum` role or above."""

    async def check(user: CurrentUser) -> User:
        if ROLE_RANK[user.role] < ROLE_RANK[minimum]:
            raise PermissionDenied(f"requires the {minimum} role; you are {user.role}")
        return user

    return check


TraderUser = Annotated[User, Depends(require_role("trader"))]
AdminUser = Annotated[User, Depends(require_role("admin"))]


def client_address(connection: HTTPConnection) -> str:
    """The client's address: the peer, or what a trusted proxy said (see `trusted_proxies`)."""
    return connection.client.host if connection.client is not None else "unknown"


def client_id(request: Request, keyring: KeyRing) -> str:
    """Who a bucket belongs to: the user of a valid token, else the client's address."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        try:
            return f"user:{keyring.verify_access_token(token.strip()).user_id}"
        except Unauthenticated:
            pass  # a bad token is rejected by the route itself; bucket it by address
    return f"ip:{client_address(request)}"


async def take_or_refuse(
    services: GatewayServices, bucket: str, route_class: str, what: str = "requests"
) -> Mapping[str, str]:
    """Take one token of `bucket`; RateLimited when it is empty, else the RateLimit-* headers."""
    decision = await services.rate_limiter.take(bucket, route_class)
    if not decision.allowed:
        raise RateLimited(
            f"rate limit of {decision.limit} {what} per minute exceeded; "
            f"retry in {decision.retry_after_seconds}s",
            decision.headers(),
        )
    return decision.headers()


def rate_limited(route_class: str, by_address: bool = False) -> Callable[..., Awaitable[None]]:
    """A dependency taking one token of `route_class` and setting the RateLimit-* headers.

    `by_address`: the bucket is the client's address whatever token it sends. For the auth
    routes, where a token is what the caller is after: keyed by user, every account an
    attacker registers would bring a fresh bucket of logins to spend on someone else's.
    """

    async def take(request: Request, response: Response, services: ServicesDep) -> None:
        bucket = (
            f"ip:{client_address(request)}" if by_address else client_id(request, services.keyring)
        )
        response.headers.update(await take_or_refuse(services, bucket, route_class))

    return take
