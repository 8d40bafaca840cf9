"""Real local servers that alert deliveries are sent to, well-behaved or hostile.

Each records what reached it, so a test can say both what was delivered and what never
arrived (a proxy that must stay unused, a rebinding answer that must not be dialled).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..grpc_helpers import free_port


@dataclass
class Target:
    """A listening server: its URL, the request heads it read, the body bytes it sent."""

    host: str
    port: int
    requests: list[bytes] = field(default_factory=list)
    body_bytes_sent: int = 0

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        """The URL of `path` on this server (by another host name when given)."""
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{name}:{self.port}{path}"


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The request line and headers, then the body of its Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return head


@contextlib.asynccontextmanager
async def serve(
    kind: str, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[Target]:
    """A raw HTTP/1.1 server of one behaviour:

    - "ok": answers 200 at once;
    - "drip": answers the status line, then one header byte every 0.2 s, forever (no single
      read ever waits long, so only a total deadline ends it);
    - "endless": answers 200 with a body that never ends;
    - "proxy": answers 200 at once, as a forward proxy that would relay the request.
    """
    target = Target(host, port or free_port())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target.requests.append(await _read_head(reader))
            if kind in ("ok", "proxy"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
            elif kind == "drip":
                writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while True:
                    await writer.drain()
                    await asyncio.sleep(0.2)
                    writer.write(b"a")
            elif kind == "endless":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                chunk = b"x" * 65536
                while True:
                    writer.write(chunk)
                    await writer.drain()
                    target.body_bytes_sent += len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: that is what the hostile servers wait for
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, target.port)
    try:
        yield target
    finally:
        server.close()
        # Handlers of hostile kinds loop until the client goes; do not wait for them.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)
