"""`/ws/{instrument}`: live bars per subscribed timeframe, throttled, over one shared upstream."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tickmesh.core.errors import DomainError
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.core.timeframes import BY_LABEL
from tickmesh.gateway.accounts import User
from tickmesh.gateway.deps import GatewayServices, get_services
from tickmesh.gateway.frame_protocol import FrameWriter
from tickmesh.gateway.schemas import AlertEventOut
from tickmesh.gateway.settings import query_tokens_allowed
from tickmesh.gateway.ws_feeds import ClientSocket

router = APIRouter(tags=["websocket"])
log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes
TOKEN_REQUIRED = "a valid access token is required"
# Production refuses tokens in URLs (proxies log them); the reason says what to send instead.
QUERY_TOKEN_REFUSED = 'no ?token= here: send {"type": "auth", "token": ...} first'


async def _authenticate(websocket: WebSocket, services: GatewayServices) -> User | str:
    """The user of the `token` query parameter or of a first {"type": "auth"} message; else why not."""
    token = websocket.query_params.get("token")
    if token is not None and not query_tokens_allowed(services.settings):
        return QUERY_TOKEN_REFUSED
    if token is None:
        try:
            first = await asyncio.wait_for(
                websocket.receive_json(), services.settings.gateway_ws_auth_timeout_seconds
            )
        except (TimeoutError, ValueError, WebSocketDisconnect):
            return TOKEN_REQUIRED
        if not isinstance(first, dict) or first.get("type") != "auth":
            return TOKEN_REQUIRED
        token = first.get("token")
        if not isinstance(token, str):
            return TOKEN_REQUIRED
    try:
        claims = services.keyring.verify_access_token(token)
        return await services.accounts.active_user(
            claims, services.settings.gateway_user_cache_seconds
        )
    except DomainError:
        return TOKEN_REQUIRED


def _timeframes(message: dict[str, Any]) -> list[str] | str:
    """The message's timeframe labels, or an error text."""
    labels = message.get("timeframes")
    if not isinstance(labels, list) or not labels or len(labels) > len(BY_LABEL):
        return f"timeframes: a list of 1 to {len(BY_LABEL)} of {', '.join(BY_LABEL)}"
    unknown = [label for label in labels if label not in BY_LABEL]
    if unknown:
        return f"timeframes: unknown {unknown!r}; expected some of {', '.join(BY_LABEL)}"
    return [str(label) for label in labels]


class _Connection:
    """One client's session: the receive loop, and a push loop for all but bars.

    Bars are written by the instrument's channels straight to the socket (`ClientSocket`);
    alerts, indicator rows, heartbeats and replies go through this session's own task.
    """

    def __init__(
        self,
        websocket: WebSocket,
        services: GatewayServices,
        instrument: InstrumentId,
        frames: FrameWriter,
    ) -> None:
        self.websocket = websocket
        self.services = services
        self.instrument = instrument
        self.timeframes: set[str] = set()
        self.wakeup = asyncio.Event()
        # The push loop ends the session when the channels find the client too slow.
        max_buffered = services.settings.gateway_ws_max_buffered_bytes
        self.socket = ClientSocket(frames, max_buffered, self.wakeup.set)
        self.beat: asyncio.TimerHandle | None = None
        self.alerts: list[AlertEventOut] = []
        self.indicators: list[dict[str, Any]] = []

    def on_indicators(self, message: dict[str, Any]) -> None:
        """Indicator listener: keep the subscribed timeframes' rows, never block."""
        if message["timeframe"] in self.timeframes:
            self.indicators.append(message)
            self.wakeup.set()

    def too_slow(self) -> bool:
        """True when the socket or the indicator and alert queues are backed up past the bound."""
        bound = self.services.settings.gateway_ws_max_pending_finals
        return self.socket.slow or len(self.indicators) > bound or len(self.alerts) > bound

    def on_alert(self, event: AlertEventOut) -> None:
        """Alert-feed listener: buffer, never block."""
        self.alerts.append(event)
        self.wakeup.set()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; a client that cannot take it in time is too slow."""
        async with asyncio.timeout(self.services.settings.gateway_ws_send_timeout_seconds):
            await self.websocket.send_text(json.dumps(message))
        self.services.metrics.ws_messages.labels(type=message["type"]).inc()

    async def receive_loop(self) -> None:
        """Handle subscribe / unsubscribe / ping messages until the client leaves."""
        feeds = self.services.ws_feeds
        while True:
            raw = await self.websocket.receive_text()
            try:
                message = json.loads(raw)
            except ValueError:
                await self.send({"type": "error", "detail": "messages are JSON objects"})
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "ping":
                await self.send({"type": "pong"})
                continue
            if kind not in ("subscribe", "unsubscribe"):
                await self.send(
                    {"type": "error", "detail": "type: one of subscribe, unsubscribe, ping"}
                )
                continue
            labels = _timeframes(message)
            if isinstance(labels, str):
                await self.send({"type": "error", "detail": labels})
                continue
            for label in labels:
                if kind == "subscribe":
                    self.timeframes.add(label)
                    feeds.subscribe(self.instrument, BY_LABEL[label].proto, self.socket)
                else:
                    self.timeframes.discard(label)
                    feeds.unsubscribe(self.instrument, BY_LABEL[label].proto, self.socket)
            await self.send(
                {
                    "type": "subscribed",
                    "instrument": str(self.instrument),
                    "timeframes": sorted(self.timeframes),
                }
            )

    async def push_loop(self) -> None:
        """Send alerts, indicator rows and heartbeats; return (to be closed) when the client lags."""
        settings = self.services.settings
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + settings.gateway_ws_heartbeat_seconds
        # One timer per heartbeat, not a timeout armed and cancelled around every wait.
        self.beat = loop.call_at(next_beat, self.wakeup.set)
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.too_slow():
                return
            try:
                while self.alerts:
                    event = self.alerts.pop(0)
                    await self.send({"type": "alert", **event.model_dump(mode="json")})
                while self.indicators:
                    await self.send(self.indicators.pop(0))
                if loop.time() >= next_beat:
                    await self.send({"type": "heartbeat", "time": datetime.now(UTC).isoformat()})
                    next_beat = loop.time() + settings.gateway_ws_heartbeat_seconds
                    self.beat = loop.call_at(next_beat, self.wakeup.set)
            except TimeoutError:
                return

    def stop(self) -> None:
        """Cancel the heartbeat timer."""
        if self.beat is not None:
            self.beat.cancel()
            self.beat = None


def _close_reason(text: str) -> str:
    """`text` cut to what a close frame carries (whole characters)."""
    return text.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")


@router.websocket("/ws/{instrument}")
async def bars_socket(websocket: WebSocket, instrument: str) -> None:
    """Live bars of `instrument` ("<venue>:<symbol>"): authenticate, then subscribe to timeframes."""
    services = get_services(websocket)
    try:
        parsed = InstrumentId.parse(instrument)
    except InstrumentError as error:
        services.metrics.invalid_input.labels(route="/ws/{instrument}", location="path").inc()
        log.info("WebSocket refused: path.instrument: %s", error)
        # Accepted first so the client reads why (a refused handshake is a bare HTTP 403).
        await websocket.accept()
        await websocket.close(POLICY_VIOLATION, _close_reason(f"instrument: {error}"))
        return
    frames = FrameWriter.of(websocket)
    await websocket.accept()
    if frames is None:
        # Served without tickmesh.gateway's protocol (the gateway's own main sets it).
        await websocket.close(INTERNAL_ERROR, "this server cannot write WebSocket frames directly")
        return
    user = await _authenticate(websocket, services)
    if isinstance(user, str):
        await websocket.close(POLICY_VIOLATION, user)
        return
    decision = await services.rate_limiter.take(f"user:{user.id}", "ws")
    if not decision.allowed:
        await websocket.close(TRY_AGAIN_LATER, "rate limited")
        return
    connection = _Connection(websocket, services, parsed, frames)
    services.ws_feeds.attach(services.fanout, parsed)
    services.indicator_fanout.add(parsed, connection.on_indicators)
    services.alert_feed.add(user.id, connection.on_alert)
    services.metrics.ws_clients.inc()
    receiver = asyncio.create_task(connection.receive_loop())
    pusher = asyncio.create_task(connection.push_loop())
    try:
        await connection.send({"type": "welcome", "instrument": str(parsed), "user": user.username})
        done, _ = await asyncio.wait({receiver, pusher}, return_when=asyncio.FIRST_COMPLETED)
        if pusher in done and not receiver.done():
            services.metrics.ws_slow_closed.inc()
            log.warning("closing a WebSocket client of %s as too slow", parsed)
            try:
                async with asyncio.timeout(services.settings.gateway_ws_send_timeout_seconds):
                    await websocket.close(TRY_AGAIN_LATER, "too slow: updates were piling up")
            except TimeoutError:
                frames.abort()  # it reads nothing, not even the close frame
            except Exception:
                pass
    except (WebSocketDisconnect, TimeoutError):
        pass  # the client left or stopped reading; cleanup below
    finally:
        for task in (receiver, pusher):
            task.cancel()
        await asyncio.gather(receiver, pusher, return_exceptions=True)
        connection.stop()
        await services.ws_feeds.detach(services.fanout, parsed, connection.socket)
        await services.indicator_fanout.remove(parsed, connection.on_indicators)
        services.alert_feed.remove(user.id, connection.on_alert)
        services.metrics.ws_clients.dec()
