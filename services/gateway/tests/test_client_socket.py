"""A client that stops reading: forming bars skipped, finals still written, closed past the bound.

A real TCP connection on loopback whose reader never reads, with small socket buffers so the
transport's own buffer fills after a few frames.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tickmesh.gateway.frame_protocol import FrameWriter, text_frame
from tickmesh.gateway.ws_feeds import ClientSocket

SMALL_BUFFER = 4096
FRAME = text_frame("x" * 65_536)
BOUND = 512 * 1024


@pytest.fixture
async def stalled() -> AsyncIterator[asyncio.Transport]:
    """The server end of a connection whose client end never reads."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.Transport] = loop.create_future()

    class Keep(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            accepted.set_result(transport)

    server = await loop.create_server(Keep, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    transport = await accepted
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    try:
        yield transport
    finally:
        transport.abort()
        client.close()
        server.close()
        await server.wait_closed()


def _writer(transport: asyncio.Transport) -> FrameWriter:
    def write(frame: bytes) -> bool:
        transport.write(frame)
        return True

    return FrameWriter(write, transport.get_write_buffer_size, transport.abort)


async def test_stalled_client_skips_forming_keeps_finals_then_is_slow(
    stalled: asyncio.Transport,
) -> None:
    slow_calls: list[int] = []
    client = ClientSocket(_writer(stalled), BOUND, lambda: slow_calls.append(1))
    assert client.push(FRAME, has_final=False)  # nothing pending: written
    for _ in range(100):  # the kernel takes the first frames; then the transport buffers
        if stalled.get_write_buffer_size():
            break
        assert client.push(FRAME, has_final=True)
        await asyncio.sleep(0)
    buffered = stalled.get_write_buffer_size()
    assert buffered > 0

    assert not client.push(FRAME, has_final=False)  # behind: the forming update is skipped
    assert stalled.get_write_buffer_size() == buffered
    assert client.push(FRAME, has_final=True)  # a final bar is never dropped
    assert stalled.get_write_buffer_size() > buffered

    while client.push(FRAME, has_final=True):
        assert stalled.get_write_buffer_size() <= BOUND + len(FRAME)
    assert client.slow
    assert not client.push(FRAME, has_final=True)
    assert slow_calls == [1]  # reported once; the session then closes the client
