"""Cheap load generators for bench_gateway, run as separate processes so they cost the gateway little.

`python -m bench.gateway_clients http BASE_URL PATHS TOKEN RATE SECONDS DRAIN`: open-loop GETs
of the comma-separated PATHS in turn over keep-alive HTTP/1.1 connections written by hand (no
client library per request); prints one JSON object with the latencies, measured from when
each request was due.

`python -m bench.gateway_clients ws BASE_URL PATH TOKEN CLIENTS CONCURRENCY SECONDS`: that many
WebSocket clients as bare asyncio protocols (frames parsed by hand, no task per client), each
subscribing to 1m; prints `{"connected": n}` once connected (or the time is up), then records
when each forming bar's close first arrives, and on a `stop` line on stdin prints the receipts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

MAX_CONNECTIONS = 64
# A forming bar's close in a `bars` message: an exact decimal string, written before final.
_FORMING_CLOSE = re.compile(rb'"close":"([-0-9.]+)",[^{}]*?"final":false')


def answer(body: dict[str, object]) -> None:
    """One JSON line on stdout for the bench."""
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


def _request(host: str, path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, int]:
    """One request on a keep-alive connection: (status, body length)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status, length


async def http_load(
    base_url: str, path: str, token: str, rate: float, seconds: float, drain: float
) -> None:
    """Open-loop load; latencies (s) counted from each request's due time."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    # Several paths, comma-separated, are requested in turn.
    requests = [_request(f"{host}:{port}", one_path, token) for one_path in path.split(",")]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(MAX_CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    failures = 0

    async def one(due: float, request: bytes) -> None:
        nonlocal failures
        connection = await idle.get()
        try:
            status, _ = await _get(*connection, request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            failures += 1
            connection = await asyncio.open_connection(host, port)
        else:
            if status == 200:
                latencies.append(time.perf_counter() - due)
            else:
                failures += 1
        idle.put_nowait(connection)

    tasks: list[asyncio.Task[None]] = []
    due_times: list[float] = []
    began = time.perf_counter()
    for index in range(int(rate * seconds)):
        due = began + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, requests[index % len(requests)])))
        due_times.append(due)
    _, unfinished = await asyncio.wait(tasks, timeout=drain)
    ended = time.perf_counter()
    for task in unfinished:
        task.cancel()
    # Still out: counted at what they waited so far, a lower bound that does not flatter.
    latencies += [ended - due_times[tasks.index(task)] for task in unfinished]
    answer(
        {
            "latencies": latencies,
            "failures": failures,
            "unfinished": len(unfinished),
            "elapsed": ended - began,
        }
    )


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 section 5.3: clients must mask)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + masked


def upgrade_request(host: str, port: int, path: str, token: str) -> bytes:
    """The HTTP request that opens a WebSocket on `path`, authenticated by `?token=`."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path}?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class WsClient(asyncio.Protocol):
    """One WebSocket client: handshake, subscribe to 1m, hand each later message to `received`."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(False)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buffer[:end]:
                self.ready.set_result(False)
                return
            self.upgraded = True
            self.buffer = self.buffer[end + 4 :]
            self._write(_frame(b'{"type":"subscribe","timeframes":["1m"]}'))
        self._frames()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _frames(self) -> None:
        while len(self.buffer) >= 2:
            opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, start = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, start = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < start + length:
                return
            payload = self.buffer[start : start + length]
            self.buffer = self.buffer[start + length :]
            if opcode == 1:
                self._message(payload)
            elif opcode == 9:
                self._write(_frame(payload, 10))  # pong
            elif opcode == 8 and self.transport is not None:
                self.transport.close()

    def _message(self, payload: bytes) -> None:
        if not self.ready.done():
            if b'"subscribed"' in payload:
                self.ready.set_result(True)
            return
        self.received(payload)

    def received(self, payload: bytes) -> None:
        """A message after the subscription was confirmed; subclasses note what they measure."""


class _ProbeClient(WsClient):
    """Notes when each probe's forming close (>= 5000) first arrives."""

    def __init__(self, request: bytes, receipts: dict[float, list[float]]) -> None:
        super().__init__(request)
        self.receipts = receipts
        self.seen: set[float] = set()

    def received(self, payload: bytes) -> None:
        received = time.monotonic()
        if b'"bars"' not in payload:
            return
        for match in _FORMING_CLOSE.finditer(payload):  # cheaper than parsing the JSON
            close = float(match[1])
            if close >= 5000 and close not in self.seen:
                self.seen.add(close)
                self.receipts.setdefault(close, []).append(received)


C = TypeVar("C", bound="WsClient")


async def connect_clients(
    base_url: str, factories: Sequence[Callable[[], C]], concurrency: int, seconds: float
) -> list[C]:
    """Connect a client per factory (at most `concurrency` handshakes at once) within `seconds`."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    loop = asyncio.get_running_loop()
    clients: list[C] = []
    gate = asyncio.Semaphore(concurrency)

    async def connect(factory: Callable[[], C]) -> None:
        async with gate:
            try:
                _, client = await loop.create_connection(factory, host, port)
                if await asyncio.wait_for(client.ready, 20):
                    clients.append(client)
            except (OSError, TimeoutError):
                pass

    attempts = [asyncio.create_task(connect(factory)) for factory in factories]
    _, pending = await asyncio.wait(attempts, timeout=seconds)
    for attempt in pending:
        attempt.cancel()
    return clients


async def until_stopped_then_close(clients: Sequence[WsClient]) -> None:
    """Wait for the bench's `stop` line on stdin, then close every client."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for client in clients:
        if client.transport is not None:
            client.transport.close()


async def ws_clients(
    base_url: str, path: str, token: str, count: int, concurrency: int, seconds: float
) -> None:
    """Connect `count` clients (at most `concurrency` handshakes at once), then record receipts."""
    url = urlsplit(base_url)
    request = upgrade_request(url.hostname or "127.0.0.1", url.port or 80, path, token)
    receipts: dict[float, list[float]] = {}
    clients = await connect_clients(
        base_url,
        [lambda: _ProbeClient(request, receipts)] * count,
        concurrency,
        seconds,
    )
    answer({"connected": len(clients)})
    await until_stopped_then_close(clients)
    answer({"receipts": receipts})


def main() -> None:
    """Dispatch on the first argument (http or ws)."""
    mode, base_url, path, token, *rest = sys.argv[1:]
    if mode == "http":
        asyncio.run(
            http_load(base_url, path, token, float(rest[0]), float(rest[1]), float(rest[2]))
        )
    else:
        asyncio.run(ws_clients(base_url, path, token, int(rest[0]), int(rest[1]), float(rest[2])))


if __name__ == "__main__":
    main()
