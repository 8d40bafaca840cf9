"""Embedded PostgreSQL and Redis: start in a state directory and keep their data across restarts."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import redis.asyncio as redis

from tickmesh.mesh.embedded import EmbeddedServers


async def test_embedded_servers_restart_keeps_data(tmp_path: Path) -> None:
    with EmbeddedServers(tmp_path) as servers:
        conn = await asyncpg.connect(servers.start_postgres())
        await conn.execute("CREATE TABLE kept (value INT); INSERT INTO kept VALUES (42)")
        await conn.close()
        client = redis.Redis.from_url(servers.start_redis())
        await client.set("kept", b"yes")
        await client.save()
        await client.aclose()
    with EmbeddedServers(tmp_path) as servers:
        conn = await asyncpg.connect(servers.start_postgres())
        assert await conn.fetchval("SELECT value FROM kept") == 42
        await conn.close()
        client = redis.Redis.from_url(servers.start_redis())
        assert await client.get("kept") == b"yes"
        await client.aclose()
