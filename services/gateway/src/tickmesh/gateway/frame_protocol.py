"""uvicorn's WebSocket protocol plus one ASGI extension: write a prepared frame to the socket.

A bar pushed to thousands of clients is the same frame for each (server frames are never
masked, and per-message compression is off), so it is serialised once and written to each
transport. Through ASGI every client cost a task wake-up, the send path and a serialisation,
together more than the socket write itself (bench_gateway: p99 push lag 237 ms with 5,000
clients before, against a goal of 200 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

EXTENSION = "tickmesh.frames"


def text_frame(text: str) -> bytes:
    """One final, unmasked text frame carrying `text`, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


@dataclass(frozen=True)
class FrameWriter:
    """A connection's direct line to its socket, from the ASGI scope."""

    write: Callable[[bytes], bool]  # False when the connection is no longer open
    buffered: Callable[[], int]  # bytes written but not yet taken by the socket
    abort: Callable[[], None]  # drop the connection at once, buffered bytes and all

    @classmethod
    def of(cls, websocket: WebSocket) -> FrameWriter | None:
        """The writer of `websocket`, or None when the server does not offer it."""
        extension: dict[str, Any] | None = websocket.scope.get("extensions", {}).get(EXTENSION)
        if extension is None:
            return None
        writer: FrameWriter = extension["writer"]
        return writer


class FrameWritingProtocol(WebSocketsSansIOProtocol):
    """The sans-I/O WebSocket protocol, its scope offering a `FrameWriter` to the app."""

    def handle_connect(self, event: Request) -> None:
        """Accept as uvicorn does; the app task, not started yet, then finds the extension."""
        super().handle_connect(event)
        if self.response.status_code == 101:
            writer = FrameWriter(self._write_frame, self._buffered, self._abort)
            self.scope["extensions"][EXTENSION] = {"writer": writer}

    def _write_frame(self, frame: bytes) -> bool:
        if self.close_sent or self.disconnected or self.conn.state is not State.OPEN:
            return False
        if self.conn.extensions:  # compression negotiated: shared frames would be wrong
            return False
        self.transport.write(frame)
        return True

    def _buffered(self) -> int:
        return 0 if self.disconnected else self.transport.get_write_buffer_size()

    def _abort(self) -> None:
        if not self.disconnected:
            self.transport.abort()
