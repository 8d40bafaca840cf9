"""Issue 13, item 7: a WebSocket subscribes only to registered instruments; an unknown one
gets an error message and a 1008 close, and opens no upstream stream."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from .ws_harness import WsMesh, next_of, ws_mesh


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WsMesh]:
    """A gateway with a registry of one simulator instrument."""
    async with ws_mesh(
        module_database_url, module_redis_url, tmp_path_factory.mktemp("ws-registry")
    ) as running:
        yield running


async def _upstreams(mesh: WsMesh) -> float:
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url) as client:
        page = (await client.get("/metrics")).text
    found = re.search(r"^tickmesh_ws_bar_upstreams (\S+)$", page, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


async def test_ws_unknown_instrument_gets_an_error_and_no_upstream(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    before = await mesh.refusals("unknown_instrument")
    upstreams = await _upstreams(mesh)
    unknown = f"simulator:NOPE{secrets.token_hex(3).upper()}"
    async with websockets.connect(mesh.url(unknown, token)) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "error"
        assert unknown in first["detail"]
        assert "not registered" in first["detail"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert await _upstreams(mesh) == upstreams
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "not registered" in closed.value.rcvd.reason
    assert await mesh.refusals("unknown_instrument") == before + 1


async def test_ws_registered_instrument_is_served(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    async with websockets.connect(mesh.url(token=token)) as ws:
        assert (await next_of(ws, "welcome"))["instrument"] == mesh.instrument
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
        await next_of(ws, "subscribed")


async def test_ws_instrument_registered_after_start_is_served_soon(mesh: WsMesh) -> None:
    _, token = await mesh.user()
    symbol = f"NEW{secrets.token_hex(3).upper()}"
    async with websockets.connect(mesh.url(f"simulator:{symbol}", token)) as ws:
        assert (await next_of(ws, "error"))["type"] == "error"
    instrument = await mesh.register(symbol)
    for _ in range(30):  # a miss re-reads the registry, at most about once a second
        async with websockets.connect(mesh.url(instrument, token)) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if first["type"] == "welcome":
                return
        await asyncio.sleep(0.2)
    pytest.fail(f"{instrument} was never served after it was registered")
