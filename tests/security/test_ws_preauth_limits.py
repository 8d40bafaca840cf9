"""Issue 13, item 7: WebSocket connections that have not authenticated are capped per client
address, and a client frame is at most a few KiB (uvicorn's default was 16 MiB)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .ws_harness import WsMesh, next_of, ws_mesh

PREAUTH_PER_IP = 3


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WsMesh]:
    """A gateway allowing 3 unauthenticated sockets per address; the frame limit left default."""
    async with ws_mesh(
        module_database_url,
        module_redis_url,
        tmp_path_factory.mktemp("ws-preauth"),
        TICKMESH_GATEWAY_WS_PREAUTH_PER_IP=str(PREAUTH_PER_IP),
        TICKMESH_GATEWAY_WS_AUTH_TIMEOUT_SECONDS="20",
    ) as running:
        yield running


async def test_ws_preauth_sockets_past_the_per_ip_limit_are_refused_429(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    before = await mesh.refusals("preauth_per_ip")
    async with AsyncExitStack() as stack:
        # Sockets that connect and never authenticate (a slowloris of WebSockets).
        waiting = [
            await stack.enter_async_context(websockets.connect(mesh.url()))
            for _ in range(PREAUTH_PER_IP)
        ]
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(mesh.url(token=token)):
                pass
        assert refused.value.response.status_code == 429
        assert await mesh.refusals("preauth_per_ip") == before + 1

        # An authenticated socket no longer counts: the address may open another one.
        await waiting[0].send(json.dumps({"type": "auth", "token": token}))
        await next_of(waiting[0], "welcome")
        async with websockets.connect(mesh.url(token=token)) as admitted:
            await next_of(admitted, "welcome")


async def test_ws_client_frame_over_the_default_limit_is_closed_1009(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    before = await mesh.refusals("message_too_big")
    async with websockets.connect(mesh.url(token=token)) as ws:
        await next_of(ws, "welcome")
        # Valid JSON the gateway would answer (a ping), padded to 64 KiB.
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 65_536}))
        with pytest.raises(ConnectionClosed) as closed:
            await next_of(ws, "pong")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert await mesh.refusals("message_too_big") == before + 1


async def test_ws_unauthenticated_frame_over_the_limit_is_closed_1009(mesh: WsMesh) -> None:
    async with websockets.connect(mesh.url()) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "x" * 1_000_000}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
