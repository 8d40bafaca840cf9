"""Stream routing: which connection gets which stream's frames, with bounded send backlogs."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import asdict, dataclass

from aiohttp import web

from tickmesh.collector.simulator.config import Market

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimulatorStats:
    """Counters that make every behaviour and fault of the simulator observable."""

    trades_emitted: int = 0
    frames_sent: int = 0
    connections_opened: int = 0
    connections_dropped: int = 0
    drop_events: int = 0
    malformed_sent: int = 0
    duplicates_sent: int = 0
    reordered: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    pings_unanswered: int = 0
    closed_for_pong_timeout: int = 0
    closed_for_rate_limit: int = 0
    closed_for_lifetime: int = 0
    closed_for_backlog: int = 0
    rest_requests: int = 0
    rest_429: int = 0
    rest_418: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for the control endpoint)."""
        return asdict(self)


def combined_frame(stream: str, data: str) -> str:
    """Wrap a payload the way /stream connections receive it."""
    return '{"stream":"' + stream + '","data":' + data + "}"


class StreamConnection:
    """One client WebSocket: its subscriptions and a writer draining its send backlog."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        market: Market,
        combined: bool,
        stats: SimulatorStats,
        max_backlog: int,
    ) -> None:
        self.ws = ws
        self.request = request
        self.market = market
        self.combined = combined
        self.subscriptions: list[str] = []
        self._stats = stats
        self._max_backlog = max_backlog
        self._backlog: deque[str] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.closed = False

    @property
    def backlog(self) -> int:
        """Frames waiting to be written."""
        return len(self._backlog)

    def send_data(self, stream: str, data: str) -> None:
        """Queue a stream payload, wrapped when the connection is a combined one."""
        self.send_raw(combined_frame(stream, data) if self.combined else data)

    def send_raw(self, frame: str) -> None:
        """Queue a frame as is; a client too slow to keep up is disconnected, as Binance does."""
        if self.closed:
            return
        if len(self._backlog) >= self._max_backlog:
            self._stats.closed_for_backlog += 1
            self.abort()
            return
        self._backlog.append(frame)
        self._drained.clear()
        self._wake.set()

    async def wait_drained(self, below: int) -> None:
        """Return once the backlog is below a mark (the replay's backpressure)."""
        while not self.closed and len(self._backlog) >= below:
            self._drained.clear()
            await self._drained.wait()

    async def run_writer(self) -> None:
        """Write queued frames in order until the connection closes."""
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                while self._backlog and not self.closed:
                    await self.ws.send_str(self._backlog.popleft())
                    self._stats.frames_sent += 1
                    if len(self._backlog) < 1000:
                        self._drained.set()
                self._drained.set()
        except (ConnectionError, RuntimeError) as exc:
            _log.debug("writer stopped: %s", exc)
            self.mark_closed()

    def mark_closed(self) -> None:
        """Stop accepting frames and release anyone waiting on the backlog."""
        self.closed = True
        self._backlog.clear()
        self._drained.set()
        self._wake.set()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, like a network failure."""
        self.mark_closed()
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class StreamHub:
    """Routes (venue, stream) to the connections subscribed to it."""

    def __init__(self, stats: SimulatorStats) -> None:
        self._stats = stats
        self._connections: set[StreamConnection] = set()
        self._routes: dict[tuple[Market, str], set[StreamConnection]] = {}

    @property
    def connections(self) -> set[StreamConnection]:
        """The open connections."""
        return self._connections

    def add(self, connection: StreamConnection) -> None:
        """Start routing to a connection."""
        self._connections.add(connection)
        self._stats.connections_opened += 1

    def remove(self, connection: StreamConnection) -> None:
        """Stop routing to a connection and forget its subscriptions."""
        connection.mark_closed()
        self._connections.discard(connection)
        for stream in connection.subscriptions:
            self._routes.get((connection.market, stream), set()).discard(connection)

    def subscribe(self, connection: StreamConnection, streams: list[str]) -> None:
        """Add streams to a connection (already subscribed ones are kept once)."""
        for stream in streams:
            if stream not in connection.subscriptions:
                connection.subscriptions.append(stream)
                self._routes.setdefault((connection.market, stream), set()).add(connection)

    def unsubscribe(self, connection: StreamConnection, streams: list[str]) -> None:
        """Remove streams from a connection."""
        for stream in streams:
            if stream in connection.subscriptions:
                connection.subscriptions.remove(stream)
                self._routes.get((connection.market, stream), set()).discard(connection)

    def subscribers(self, market: Market, stream: str) -> set[StreamConnection]:
        """The connections that want a stream."""
        return self._routes.get((market, stream), set())

    def publish(self, market: Market, stream: str, data: str) -> None:
        """Send a payload to every subscriber of a stream."""
        for connection in self._routes.get((market, stream), ()):
            connection.send_data(stream, data)

    async def wait_drained(self, below: int) -> None:
        """Wait until every connection's backlog is below a mark."""
        for connection in list(self._connections):
            await connection.wait_drained(below)

    def drop_all(self) -> int:
        """Abort every connection at once (a network failure); return how many."""
        dropped = list(self._connections)
        for connection in dropped:
            connection.abort()
        self._stats.connections_dropped += len(dropped)
        return len(dropped)
