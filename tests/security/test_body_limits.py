"""Item 7 (HTTP): a request body larger than the limit is refused before it is read.

Today an unauthenticated multi-GB login body is read in full before the rate limiter runs.
These tests talk to a real uvicorn over a raw socket, so nothing buffers the body for us.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import asyncpg

from .auth_harness import gateway_app, login, register, served

LIMIT = 64 * 1024


async def _open(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(base_url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _status_and_body(reader: asyncio.StreamReader, within: float) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), within)
    return status, body


async def test_declared_oversize_body_is_413_before_any_byte_is_read(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    async with (
        gateway_app(db_pool, redis_url, gateway_max_body_bytes=LIMIT) as gateway,
        served(gateway.app) as base_url,
    ):
        reader, writer = await _open(base_url)
        # Three gigabytes announced, a handful sent: the answer must not wait for the rest.
        writer.write(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: gateway\r\n"
            b'Content-Type: application/json\r\nContent-Length: 3000000000\r\n\r\n{"username":'
        )
        await writer.drain()
        status, body = await _status_and_body(reader, within=5)
        writer.close()
        assert status == 413
        problem = json.loads(body)
        assert problem["status"] == 413
        assert str(LIMIT) in problem["detail"]


async def test_streamed_oversize_body_is_cut_off_at_the_limit(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    async with (
        gateway_app(db_pool, redis_url, gateway_max_body_bytes=LIMIT) as gateway,
        served(gateway.app) as base_url,
    ):
        reader, writer = await _open(base_url)
        writer.write(
            b"POST /api/v1/auth/register HTTP/1.1\r\nHost: gateway\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 16 * 1024
        answer: asyncio.Task[tuple[int, bytes]] = asyncio.create_task(
            _status_and_body(reader, within=30)
        )
        sent = 0
        try:
            # 64 MiB offered in chunks; the server must answer long before taking them all.
            while not answer.done() and sent < 64 * 1024 * 1024:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
        except ConnectionError:
            pass  # the server closed the connection after answering
        status, body = await answer
        writer.close()
        assert status == 413
        assert sent < 16 * 1024 * 1024, f"the server read {sent} bytes before refusing"
        assert json.loads(body)["status"] == 413


async def test_body_under_the_limit_is_served(db_pool: asyncpg.Pool, redis_url: str) -> None:
    async with gateway_app(db_pool, redis_url, gateway_max_body_bytes=LIMIT) as gateway:
        name = await register(gateway.client)
        tokens = await login(gateway.client, name, "correct horse")
        assert tokens["token_type"] == "bearer"
