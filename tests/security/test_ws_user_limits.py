"""Issue 13, item 7: a user holds at most N WebSocket connections, and a connection may send
only so many messages per second (a token bucket); both close with 1008 and a reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from .ws_harness import WsMesh, next_of, ws_mesh

PER_USER = 3
PER_SECOND = 2
BURST = 5


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WsMesh]:
    """A gateway allowing 3 sockets per user and 2 messages per second (bursts of 5)."""
    async with ws_mesh(
        module_database_url,
        module_redis_url,
        tmp_path_factory.mktemp("ws-user"),
        TICKMESH_GATEWAY_WS_CONNECTIONS_PER_USER=str(PER_USER),
        TICKMESH_GATEWAY_WS_MESSAGES_PER_SECOND=str(PER_SECOND),
        TICKMESH_GATEWAY_WS_MESSAGE_BURST=str(BURST),
    ) as running:
        yield running


async def test_ws_connection_past_the_per_user_cap_is_closed_1008(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    _, other_token = await mesh.user()
    before = await mesh.refusals("connections_per_user")
    async with AsyncExitStack() as stack:
        held = []
        for _ in range(PER_USER):
            ws = await stack.enter_async_context(websockets.connect(mesh.url(token=token)))
            await next_of(ws, "welcome")
            held.append(ws)
        async with websockets.connect(mesh.url(token=token)) as extra:
            with pytest.raises(ConnectionClosed) as closed:
                await next_of(extra, "welcome")
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert "connections" in closed.value.rcvd.reason
        assert await mesh.refusals("connections_per_user") == before + 1

        # Another user is not affected by this one's cap.
        async with websockets.connect(mesh.url(token=other_token)) as other:
            await next_of(other, "welcome")

        # A slot freed by a close is free again.
        await held[0].close()
        for _ in range(50):
            async with websockets.connect(mesh.url(token=token)) as again:
                try:
                    await next_of(again, "welcome")
                    break
                except ConnectionClosed:
                    await asyncio.sleep(0.1)  # the server has not seen the close yet
        else:
            pytest.fail("the freed slot was never given back")


async def _pongs_until_closed(ws: ClientConnection, most: int) -> tuple[int, Close | None]:
    """How many pongs came before the close (None when `most` came and no close)."""
    pongs = 0
    try:
        while pongs < most:
            await next_of(ws, "pong")
            pongs += 1
    except ConnectionClosed as closed:
        return pongs, closed.rcvd
    return pongs, None


async def test_ws_flood_of_messages_is_closed_1008(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    before = await mesh.refusals("message_rate")
    async with websockets.connect(mesh.url(token=token)) as ws:
        await next_of(ws, "welcome")
        for _ in range(40):
            await ws.send(json.dumps({"type": "ping"}))
        pongs, closed = await _pongs_until_closed(ws, 40)
    assert pongs <= BURST + 1
    assert closed is not None
    assert closed.code == 1008
    assert "rate" in closed.reason
    assert await mesh.refusals("message_rate") == before + 1


async def test_ws_client_within_the_message_rate_stays_open(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    async with websockets.connect(mesh.url(token=token)) as ws:
        await next_of(ws, "welcome")
        # What the dashboard sends: auth + subscribe, then a timeframe switch now and then.
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
        await next_of(ws, "subscribed")
        for _ in range(6):
            await ws.send(json.dumps({"type": "unsubscribe", "timeframes": ["1m"]}))
            await ws.send(json.dumps({"type": "subscribe", "timeframes": ["5m"]}))
            await next_of(ws, "subscribed")
            await next_of(ws, "subscribed")
            await asyncio.sleep(1.0)
        await ws.send(json.dumps({"type": "ping"}))
        await next_of(ws, "pong")
