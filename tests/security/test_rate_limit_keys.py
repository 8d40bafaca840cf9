"""Item 8: rate limits an attacker cannot reshape.

The auth routes key on the client's address alone (a bearer token must not buy a fresh
bucket), one username cannot be guessed at faster than its own limit from many addresses,
and X-Forwarded-For counts only when it comes from a configured trusted proxy.
"""

from __future__ import annotations

import asyncpg

from .auth_harness import bearer, gateway_app, login, register

WRONG = {"password": "wrong-password"}


async def test_auth_bucket_ignores_bearer_tokens(db_pool: asyncpg.Pool, redis_url: str) -> None:
    async with gateway_app(db_pool, redis_url) as setup:
        name = await register(setup.client)
        tokens = await login(setup.client, name, "correct horse")
    async with gateway_app(db_pool, redis_url, gateway_auth_rate_limit_per_minute=3) as gateway:
        for _ in range(3):
            reply = await gateway.client.post(
                "/api/v1/auth/login", json={"username": "nobody-here", **WRONG}
            )
            assert reply.status_code == 401
        # Same address, now with a valid token: still the address's (empty) bucket.
        with_token = await gateway.client.post(
            "/api/v1/auth/login",
            json={"username": "nobody-here", **WRONG},
            headers=bearer(tokens),
        )
        assert with_token.status_code == 429


async def test_login_throttle_per_username_across_addresses(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    async with gateway_app(
        db_pool,
        redis_url,
        gateway_trusted_proxies=["127.0.0.1"],
        gateway_login_attempts_per_minute=3,
    ) as gateway:
        name = await register(gateway.client)
        statuses = []
        for i in range(4):
            # Each guess from another address behind the trusted proxy.
            reply = await gateway.client.post(
                "/api/v1/auth/login",
                json={"username": name.upper() if i % 2 else name, **WRONG},
                headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
            )
            statuses.append(reply.status_code)
        assert statuses == [401, 401, 401, 429]
        assert "Retry-After" in reply.headers
        # Another user is not locked out by the guesses against this one.
        other = await register(gateway.client)
        await login(gateway.client, other, "correct horse")


async def test_forwarded_for_counts_only_from_trusted_proxies(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    # The in-process client connects from 127.0.0.1.
    for trusted, expect_limited in (([], True), (["10.0.0.1"], True), (["127.0.0.0/8"], False)):
        async with gateway_app(
            db_pool,
            redis_url,
            gateway_auth_rate_limit_per_minute=2,
            gateway_trusted_proxies=trusted,
        ) as gateway:
            statuses = set()
            for i in range(4):
                reply = await gateway.client.post(
                    "/api/v1/auth/login",
                    json={"username": "nobody-here", **WRONG},
                    headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
                )
                statuses.add(reply.status_code)
            assert (429 in statuses) is expect_limited, (trusted, statuses)
