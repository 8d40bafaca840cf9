"""The token bucket through the app: limit, 429 problem with Retry-After and RateLimit-* headers."""

from __future__ import annotations

from .conftest import GatewayFactory


async def test_rate_limit_refuses_past_limit_with_headers(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(gateway_rate_limit_per_minute=3)
    statuses = []
    for _ in range(4):
        reply = await gateway.client.get("/api/v1/health")
        statuses.append(reply.status_code)
    assert statuses[:3] != [429, 429, 429]
    assert 429 not in statuses[:3]
    assert statuses[3] == 429
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["ratelimit-limit"] == "3"
    assert reply.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(reply.headers["retry-after"]) <= 20
    assert 1 <= int(reply.headers["ratelimit-reset"]) <= 60
    assert "rate limit of 3 requests per minute" in reply.json()["detail"]


async def test_rate_limit_buckets_per_user_not_shared(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(gateway_rate_limit_per_minute=2)
    alice = await gateway.user()
    bob = await gateway.user()
    for _ in range(2):
        assert (
            await gateway.client.get("/api/v1/alerts", headers=alice.headers)
        ).status_code != 429
    assert (await gateway.client.get("/api/v1/alerts", headers=alice.headers)).status_code == 429
    reply = await gateway.client.get("/api/v1/health", headers=bob.headers)
    assert reply.status_code == 200
    assert reply.headers["ratelimit-remaining"] == "1"


async def test_liveness_is_never_rate_limited(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(gateway_rate_limit_per_minute=1)
    for _ in range(5):
        assert (await gateway.client.get("/health")).json() == {"status": "ok"}
