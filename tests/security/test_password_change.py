"""Item 10 (accounts): changing a password ends every session; refresh families age out.

A user who suspects a leak changes their password: every refresh family and every access
token issued before must stop working. And a refresh family cannot be rotated forever.
"""

from __future__ import annotations

import asyncpg

from .auth_harness import bearer, gateway_app, login, register

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple 2"


async def test_password_change_revokes_every_session(db_pool: asyncpg.Pool, redis_url: str) -> None:
    async with gateway_app(db_pool, redis_url, gateway_user_cache_seconds=0) as gateway:
        name = await register(gateway.client, PASSWORD)
        laptop = await login(gateway.client, name, PASSWORD)
        phone = await login(gateway.client, name, PASSWORD)

        changed = await gateway.client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(laptop),
        )
        assert changed.status_code == 200, changed.text
        fresh = changed.json()

        for old in (laptop, phone):
            refreshed = await gateway.client.post(
                "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
            )
            assert refreshed.status_code == 401
            me = await gateway.client.get("/api/v1/auth/me", headers=bearer(old))
            assert me.status_code == 401
        # The caller keeps a session: the new pair it got back.
        assert (
            await gateway.client.get("/api/v1/auth/me", headers=bearer(fresh))
        ).status_code == 200
        rotated = await gateway.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}
        )
        assert rotated.status_code == 200
        old_login = await gateway.client.post(
            "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
        )
        assert old_login.status_code == 401
        await login(gateway.client, name, NEW_PASSWORD)


async def test_password_change_with_wrong_current_password_changes_nothing(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    async with gateway_app(db_pool, redis_url) as gateway:
        name = await register(gateway.client, PASSWORD)
        tokens = await login(gateway.client, name, PASSWORD)
        refused = await gateway.client.post(
            "/api/v1/auth/password",
            json={"current_password": "not-the-password", "new_password": NEW_PASSWORD},
            headers=bearer(tokens),
        )
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        refreshed = await gateway.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200
        await login(gateway.client, name, PASSWORD)


async def test_refresh_family_past_absolute_lifetime_is_refused(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    async with gateway_app(
        db_pool, redis_url, gateway_refresh_token_days=14, gateway_refresh_family_max_days=30
    ) as gateway:
        name = await register(gateway.client, PASSWORD)
        tokens = await login(gateway.client, name, PASSWORD)
        user_id = await db_pool.fetchval("SELECT id FROM users WHERE username = $1", name)
        # The family began 31 days ago and was rotated daily since: each token is still fresh.
        await db_pool.execute(
            "UPDATE refresh_tokens SET issued_at = now() - interval '31 days' WHERE user_id = $1",
            user_id,
        )
        refused = await gateway.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refused.status_code == 401
        assert "log in again" in refused.json()["detail"]


async def test_rotated_token_never_outlives_its_family(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    async with gateway_app(
        db_pool, redis_url, gateway_refresh_token_days=14, gateway_refresh_family_max_days=20
    ) as gateway:
        name = await register(gateway.client, PASSWORD)
        tokens = await login(gateway.client, name, PASSWORD)
        user_id = await db_pool.fetchval("SELECT id FROM users WHERE username = $1", name)
        await db_pool.execute(
            "UPDATE refresh_tokens SET issued_at = now() - interval '10 days' WHERE user_id = $1",
            user_id,
        )
        rotated = await gateway.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert rotated.status_code == 200
        lifetime_left = await db_pool.fetchval(
            "SELECT expires_at - now() FROM refresh_tokens WHERE user_id = $1 "
            "ORDER BY id DESC LIMIT 1",
            user_id,
        )
        assert lifetime_left.days < 11  # capped at the family's end, not 14 days from now
