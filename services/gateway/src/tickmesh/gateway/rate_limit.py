"""Token-bucket rate limiting shared by every gateway replica through one Redis Lua script.

A hand-written script rather than a library: the whole decision (refill, take, remaining,
reset) is one atomic round trip on Redis's own clock, so replicas with skewed clocks still
share one bucket, and the numbers the RateLimit-* headers need come back with the answer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from tickmesh.core.cache import rate_limit_key
from tickmesh.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# KEYS[1]: the bucket (hash: tokens, ts). ARGV[1]: capacity, ARGV[2]: ms to refill from 0 to full.
# Returns {allowed (0/1), whole tokens left, ms until one token, ms until full}.
_TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
local rate = capacity / window_ms
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], window_ms + 1000)
local retry_ms = 0
if allowed == 0 then
  retry_ms = math.ceil((1 - tokens) / rate)
end
return {allowed, math.floor(tokens), retry_ms, math.ceil((capacity - tokens) / rate)}
"""

WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Decision:
    """The bucket's answer and the headers that describe it."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit/Remaining/Reset (IETF draft) plus Retry-After when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


class RateLimiter:
    """Buckets per client and route class; `limits` maps a route class to requests per minute."""

    def __init__(
        self,
        client: redis.Redis,
        limits: dict[str, int],
        metrics: GatewayMetrics,
        key_prefix: str = "",
    ) -> None:
        self._limits = limits
        self._metrics = metrics
        self._prefix = key_prefix
        self._script = client.register_script(_TOKEN_BUCKET_LUA)

    def limit_of(self, route_class: str) -> int:
        """Requests per minute of a route class."""
        return self._limits[route_class]

    async def take(self, client_id: str, route_class: str) -> Decision:
        """Take one token; when Redis is down, admit (counted and logged) rather than fail the API."""
        limit = self._limits[route_class]
        key = self._prefix + rate_limit_key(client_id, route_class)
        try:
            allowed, remaining, retry_ms, reset_ms = await self._script(
                keys=[key], args=[limit, WINDOW_MS]
            )
        except RedisError as error:
            # Availability over strictness: a Redis outage must not take the whole API down.
            self._metrics.rate_limiter_errors.inc()
            log.warning("rate limiter unavailable, admitting: %s", error)
            return Decision(True, limit, limit, 0, 0)
        if not allowed:
            self._metrics.rate_limited.labels(route_class=route_class).inc()
        return Decision(
            allowed=bool(allowed),
            limit=limit,
            remaining=int(remaining),
            retry_after_seconds=max(1, math.ceil(int(retry_ms) / 1000)),
            reset_seconds=math.ceil(int(reset_ms) / 1000),
        )
