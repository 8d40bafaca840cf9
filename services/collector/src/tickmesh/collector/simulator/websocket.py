"""Binance's market-stream WebSocket protocol: /ws, /ws/<streams>, /stream?streams=...

Spot streams live at the root, USD-M streams under /usdm/ (Binance serves them from
another host; one port keeps the simulator simple). Live SUBSCRIBE, UNSUBSCRIBE,
LIST_SUBSCRIPTIONS, SET_PROPERTY and GET_PROPERTY requests are answered in order
with the data; the server pings, drops clients that stop answering, and enforces
Binance's limits (streams per connection, incoming messages per second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from tickmesh.collector.simulator.config import Market, SimulatorConfig
from tickmesh.collector.simulator.hub import SimulatorStats, StreamConnection, StreamHub

_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


def normalize_stream(stream: str) -> str:
    """Binance stream names carry the symbol in lower case: 'BTCUSDT@trade' -> 'btcusdt@trade'."""
    symbol, at, kind = stream.partition("@")
    return symbol.lower() + at + kind


def _error(code: int, message: str, request_id: object) -> str:
    return json.dumps({"error": {"code": code, "msg": message}, "id": request_id})


@dataclass(slots=True)
class _Keepalive:
    # When the oldest unanswered ping was sent (monotonic seconds), None when all answered.
    ping_outstanding_since: float | None = None
    incoming: deque[float] = field(default_factory=deque)


class WebSocketEndpoint:
    """The aiohttp handler for every market-stream WebSocket path."""

    def __init__(self, hub: StreamHub, config: SimulatorConfig, stats: SimulatorStats) -> None:
        self._hub = hub
        self._config = config
        self._stats = stats

    def routes(self) -> list[web.RouteDef]:
        """Spot paths at the root and USD-M paths under /usdm."""
        paths = ("/stream", "/ws", "/ws/{streams:.+}")
        return [web.get(prefix + path, self.handle) for prefix in ("", "/usdm") for path in paths]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one connection until either side closes it."""
        market = Market.USDM if request.path.startswith("/usdm/") else Market.SPOT
        combined = request.path.removeprefix("/usdm").startswith("/stream")
        raw = (
            request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        )
        streams = [normalize_stream(name) for name in raw.split("/") if name]
        if len(streams) > self._config.max_streams_per_connection:
            raise web.HTTPBadRequest(
                text=_error(2, "Invalid request: too many streams", None),
                content_type="application/json",
            )
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        connection = StreamConnection(
            ws, request, market, combined, self._stats, self._config.max_send_backlog
        )
        self._hub.add(connection)
        self._hub.subscribe(connection, streams)
        state = _Keepalive()
        tasks = [
            asyncio.create_task(connection.run_writer()),
            asyncio.create_task(self._ping(connection, state)),
            asyncio.create_task(self._expire(connection)),
        ]
        try:
            await self._read(connection, state)
        finally:
            self._hub.remove(connection)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not ws.closed:
                with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                    await ws.close()
        return ws

    async def _read(self, connection: StreamConnection, state: _Keepalive) -> None:
        ws = connection.ws
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                break
            if self._over_rate(state):
                self._stats.closed_for_rate_limit += 1
                connection.mark_closed()
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"Too many requests")
                break
            if message.type == WSMsgType.PING:
                if self._config.faults.answer_pings:
                    await ws.pong(message.data)
                else:
                    self._stats.pings_unanswered += 1
            elif message.type == WSMsgType.PONG:
                self._stats.pongs_received += 1
                state.ping_outstanding_since = None
            elif message.type == WSMsgType.TEXT:
                connection.send_raw(self._control(connection, message.data))
            # Binary frames are ignored, as Binance ignores them.

    def _over_rate(self, state: _Keepalive) -> bool:
        # Binance counts every incoming PING, PONG and JSON message against 5 per second.
        now = time.monotonic()
        state.incoming.append(now)
        while state.incoming and now - state.incoming[0] > 1.0:
            state.incoming.popleft()
        return len(state.incoming) > self._config.max_incoming_per_second

    async def _ping(self, connection: StreamConnection, state: _Keepalive) -> None:
        interval = self._config.ping_interval_s
        timeout = self._config.pong_timeout_s
        next_ping = time.monotonic() + interval
        while not connection.closed:
            await asyncio.sleep(min(interval, timeout) / 4)
            now = time.monotonic()
            since = state.ping_outstanding_since
            if since is not None and now - since > timeout:
                self._stats.closed_for_pong_timeout += 1
                connection.abort()
                return
            if now >= next_ping:
                next_ping = now + interval
                if self._config.faults.send_pings:
                    await connection.ws.ping(b"tickmesh-simulator")
                    self._stats.pings_sent += 1
                    if state.ping_outstanding_since is None:
                        state.ping_outstanding_since = now

    async def _expire(self, connection: StreamConnection) -> None:
        await asyncio.sleep(self._config.faults.max_connection_lifetime_s)
        if not connection.closed:
            self._stats.closed_for_lifetime += 1
            connection.mark_closed()
            await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"connection lifetime")

    def _control(self, connection: StreamConnection, text: str) -> str:
        try:
            request = json.loads(text)
        except ValueError as exc:
            return _error(3, f"Invalid JSON: {exc}", None)
        if not isinstance(request, dict):
            return _error(3, "Invalid JSON: expected an object", None)
        request_id = request.get("id")
        valid_id = request_id is None or isinstance(request_id, str)
        valid_id = valid_id or (isinstance(request_id, int) and request_id >= 0)
        if not valid_id or isinstance(request_id, bool):
            return _error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = request.get("method")
        params = request.get("params", [])
        if method not in _METHODS:
            return _error(2, f"Invalid request: unknown variant {method!r}", request_id)
        if not isinstance(params, list):
            return _error(2, "Invalid request: params must be a list", request_id)
        result: object = None
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(name, str) and "@" in name for name in params):
                return _error(2, "Invalid request: invalid stream name", request_id)
            streams = [normalize_stream(name) for name in params]
            if method == "UNSUBSCRIBE":
                self._hub.unsubscribe(connection, streams)
            elif len(set(connection.subscriptions) | set(streams)) > (
                self._config.max_streams_per_connection
            ):
                return _error(2, "Invalid request: too many streams", request_id)
            else:
                self._hub.subscribe(connection, streams)
        elif method == "LIST_SUBSCRIPTIONS":
            result = list(connection.subscriptions)
        elif params[:1] != ["combined"]:
            return _error(0, "Unknown property", request_id)
        elif method == "GET_PROPERTY":
            result = connection.combined
        elif len(params) != 2 or not isinstance(params[1], bool):
            return _error(1, "Invalid value type: expected Boolean", request_id)
        else:
            connection.combined = params[1]
        return json.dumps({"result": result, "id": request_id})
