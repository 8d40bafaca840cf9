"""Item 6: the bootstrap admin is insert-only, and usernames are unique whatever their case.

Whoever self-registered the configured admin name first must not become an admin, a changed
configured password must not be ignored, and `Admin` must not stand beside `admin`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import httpx

from tickmesh.core.db.migrations import load_migrations, migrate

from ..gateway.processes import SECRET, start_gateway
from .auth_harness import bearer, gateway_app, login

ATTACKER_PASSWORD = "attacker-password-1"
CONFIGURED_PASSWORD = "configured-password-1"


def _gateway_env(database_url: str, redis_url: str, admin: str, **extra: str) -> dict[str, str]:
    return {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_ENVIRONMENT": "test",
        "TICKMESH_GATEWAY_PORT": "0",
        "TICKMESH_GATEWAY_JWT_SECRET": SECRET,
        "TICKMESH_GATEWAY_ADMIN_USERNAME": admin,
        "TICKMESH_GATEWAY_ADMIN_PASSWORD": CONFIGURED_PASSWORD,
        "TICKMESH_COLLECTOR_ADDRESS": "127.0.0.1:1",
        "TICKMESH_BARS_ADDRESS": "127.0.0.1:1",
        "TICKMESH_ANALYTICS_ADDRESS": "127.0.0.1:1",
        "TICKMESH_GATEWAY_ALERTS_ENABLED": "false",
        "TICKMESH_DRAIN_SECONDS": "1",
        **extra,
    }


async def _run_until_exit(env: dict[str, str], log_path: Path, within: float = 30) -> int | None:
    """Start a gateway; its exit status, or None (then stopped) if it was still up `within`s later."""
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickmesh.gateway", env={**os.environ, **env}, stderr=log
        )
    try:
        return await asyncio.wait_for(process.wait(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None


async def test_bootstrap_admin_name_taken_by_other_user_refuses_to_start(
    db_pool: asyncpg.Pool, database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with gateway_app(db_pool, fresh_redis_url, gateway_jwt_secret=SECRET) as gateway:
        name = "boot" + os.urandom(4).hex()
        # Self-registered before any gateway was configured with this admin name.
        registered = await gateway.client.post(
            "/api/v1/auth/register", json={"username": name, "password": ATTACKER_PASSWORD}
        )
        assert registered.status_code == 201

    log_path = tmp_path / "gateway.log"
    # It exits as soon as it has checked the admin; on a busy box its imports alone can take
    # over ten seconds, so the bound is generous.
    status = await _run_until_exit(
        _gateway_env(database_url, fresh_redis_url, name), log_path, within=60
    )

    assert status is not None, "the gateway started over a mismatched admin"
    assert status == 2
    log = log_path.read_text()
    assert "TICKMESH_GATEWAY_ADMIN_RESET" in log
    assert CONFIGURED_PASSWORD not in log
    assert ATTACKER_PASSWORD not in log
    role = await db_pool.fetchval("SELECT role FROM users WHERE username = $1", name)
    assert role == "viewer"


async def test_bootstrap_admin_reset_replaces_password_and_revokes_tokens(
    db_pool: asyncpg.Pool, database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    name = "boot" + os.urandom(4).hex()
    async with gateway_app(db_pool, fresh_redis_url, gateway_jwt_secret=SECRET) as gateway:
        await gateway.client.post(
            "/api/v1/auth/register", json={"username": name, "password": ATTACKER_PASSWORD}
        )
        stolen = await login(gateway.client, name, ATTACKER_PASSWORD)

    process = await start_gateway(
        database_url,
        fresh_redis_url,
        tmp_path / "gateway.log",
        TICKMESH_GATEWAY_ADMIN_USERNAME=name,
        TICKMESH_GATEWAY_ADMIN_PASSWORD=CONFIGURED_PASSWORD,
        TICKMESH_GATEWAY_ADMIN_RESET="true",
        TICKMESH_GATEWAY_ALERTS_ENABLED="false",
    )
    try:
        async with httpx.AsyncClient(base_url=process.base_url) as client:
            old_password = await client.post(
                "/api/v1/auth/login", json={"username": name, "password": ATTACKER_PASSWORD}
            )
            assert old_password.status_code == 401
            admin = await login(client, name, CONFIGURED_PASSWORD)
            me = await client.get("/api/v1/auth/me", headers=bearer(admin))
            assert me.json()["role"] == "admin"
            # The earlier owner's session is gone: neither its refresh nor its access token
            # (which would otherwise now carry an admin's rights) still works.
            refresh = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]}
            )
            assert refresh.status_code == 401
            old_access = await client.get("/api/v1/auth/me", headers=bearer(stolen))
            assert old_access.status_code == 401
    finally:
        await process.stop()


async def test_usernames_differing_only_in_case_are_one_name(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    async with gateway_app(db_pool, redis_url) as gateway:
        name = "Case" + os.urandom(4).hex()
        first = await gateway.client.post(
            "/api/v1/auth/register", json={"username": name, "password": "first-password"}
        )
        assert first.status_code == 201
        second = await gateway.client.post(
            "/api/v1/auth/register", json={"username": name.upper(), "password": "other-password"}
        )
        assert second.status_code == 409
        # The name logs in whatever case the user types it in.
        await login(gateway.client, name.lower(), "first-password")


async def test_migration_renames_later_case_duplicates_and_keeps_the_oldest(
    fresh_database_url: str,
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        before = [m for m in load_migrations() if m.version <= 6]
        await migrate(conn, before)
        oldest = await conn.fetchval(
            "INSERT INTO users (username, password_hash, role) VALUES ('Dup', 'x', 'admin') "
            "RETURNING id"
        )
        later = await conn.fetchval(
            "INSERT INTO users (username, password_hash, role) VALUES ('dup', 'x', 'viewer') "
            "RETURNING id"
        )
        await migrate(conn)
        rows = await conn.fetch("SELECT id, username FROM users ORDER BY id")
        names = {row["id"]: row["username"] for row in rows}
        assert names[oldest] == "Dup"
        assert names[later] == f"dup~{later}"
        try:
            await conn.execute(
                "INSERT INTO users (username, password_hash, role) VALUES ('DUP', 'x', 'viewer')"
            )
        except asyncpg.UniqueViolationError:
            pass
        else:
            raise AssertionError("a third case variant was accepted")
    finally:
        await conn.close()
