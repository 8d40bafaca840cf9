"""`/ws/{instrument}`: live bars per subscribed timeframe, throttled, over one shared upstream."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import BY_LABEL
from tickmesh.gateway.deps import GatewayServices, get_services
from tickmesh.gateway.frame_protocol import FrameWriter
from tickmesh.gateway.indicator_fanout import IndicatorPush
from tickmesh.gateway.schemas import AlertEventOut
from tickmesh.gateway.ws_admission import (
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    Admission,
    admitted,
    close_or_abort,
)
from tickmesh.gateway.ws_feeds import ClientSocket

router = APIRouter(tags=["websocket"])
log = logging.getLogger(__name__)


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

    Bars and indicator rows are written straight to the socket (`ClientSocket`), as framed
    once for every client; alerts, heartbeats and replies go through this session's own task.
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
        self.bucket = services.ws_guard.message_bucket()
        # Set once when a limit or check ends the session: (refusal reason, close reason).
        self.ending: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()

    def end(self, reason: str, text: str) -> None:
        """End the session with a 1008 close saying `text` (the first call wins)."""
        if not self.ending.done():
            self.ending.set_result((reason, text))

    def on_indicators(self, push: IndicatorPush) -> None:
        """Indicator listener: write the subscribed timeframes' rows, never block.

        Like a final bar, a row is never skipped; a client that leaves too much unread is
        marked slow by its socket, and the push loop then ends the session.
        """
        if push.timeframe in self.timeframes and self.socket.push(push.frame, has_final=True):
            self.services.metrics.ws_messages.labels(type="indicators").inc()

    def too_slow(self) -> bool:
        """True when the socket or the alert queue is backed up past the bound."""
        bound = self.services.settings.gateway_ws_max_pending_finals
        return self.socket.slow or len(self.alerts) > bound

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
            try:
                raw = await self.websocket.receive_text()
            except WebSocketDisconnect as gone:
                if gone.code == MESSAGE_TOO_BIG:
                    self.services.ws_guard.refused(
                        "message_too_big", str(self.instrument), "oversized message"
                    )
                raise
            if not self.bucket.take():
                self.end("message_rate", f"message rate over {self.bucket.per_second:g} per second")
                return
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
        """Send alerts and heartbeats; return (to be closed) when the client lags."""
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


@router.websocket("/ws/{instrument}")
async def bars_socket(websocket: WebSocket, instrument: str) -> None:
    """Live bars of `instrument` ("<venue>:<symbol>"): authenticate, then subscribe to timeframes."""
    services = get_services(websocket)
    async with admitted(websocket, services, instrument, "/ws/{instrument}") as admission:
        if admission is not None:
            await _serve(websocket, services, admission)


async def _serve(websocket: WebSocket, services: GatewayServices, admission: Admission) -> None:
    """Run an admitted session until the client leaves, lags, or a limit or check ends it."""
    user, expires_at, parsed, frames = (
        admission.user,
        admission.expires_at,
        admission.instrument,
        admission.frames,
    )
    decision = await services.rate_limiter.take(f"user:{user.id}", "ws")
    if not decision.allowed:
        await websocket.close(TRY_AGAIN_LATER, "rate limited")
        return
    connection = _Connection(websocket, services, parsed, frames)
    session = services.ws_guard.sessions.add(user.id, expires_at, connection.end)
    services.ws_feeds.attach(services.fanout, parsed)
    services.indicator_fanout.add(parsed, connection.on_indicators)
    services.alert_feed.add(user.id, connection.on_alert)
    services.metrics.ws_clients.inc()
    receiver = asyncio.create_task(connection.receive_loop())
    pusher = asyncio.create_task(connection.push_loop())
    try:
        await connection.send({"type": "welcome", "instrument": str(parsed), "user": user.username})
        waiting: set[asyncio.Future[Any]] = {receiver, pusher, connection.ending}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if connection.ending in done:
            reason, text = connection.ending.result()
            services.ws_guard.refused(reason, f"user {user.username}", text)
            await close_or_abort(websocket, services, frames, POLICY_VIOLATION, text)
        elif pusher in done and not receiver.done():
            services.metrics.ws_slow_closed.inc()
            log.warning("closing a WebSocket client of %s as too slow", parsed)
            await close_or_abort(
                websocket, services, frames, TRY_AGAIN_LATER, "too slow: updates were piling up"
            )
    except (WebSocketDisconnect, TimeoutError):
        pass  # the client left or stopped reading; cleanup below
    finally:
        for task in (receiver, pusher):
            task.cancel()
        await asyncio.gather(receiver, pusher, return_exceptions=True)
        connection.stop()
        services.ws_guard.sessions.remove(session)
        await services.ws_feeds.detach(services.fanout, parsed, connection.socket)
        await services.indicator_fanout.remove(parsed, connection.on_indicators)
        services.alert_feed.remove(user.id, connection.on_alert)
        services.metrics.ws_clients.dec()
