"""`/ws/{symbol}`: live bars per subscribed timeframe, throttled, over one shared upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tickmesh.core.errors import DomainError
from tickmesh.core.timeframes import BY_LABEL
from tickmesh.gateway.accounts import User
from tickmesh.gateway.deps import GatewayServices, get_services
from tickmesh.gateway.outbox import Outbox
from tickmesh.gateway.schemas import SYMBOL_PATTERN, AlertEventOut
from tickmesh.v1 import market_pb2

router = APIRouter(tags=["websocket"])

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
_SYMBOL = re.compile(SYMBOL_PATTERN)


async def _authenticate(websocket: WebSocket, services: GatewayServices) -> User | None:
    """The user of the `token` query parameter, or of a first {"type": "auth"} message."""
    token = websocket.query_params.get("token")
    if token is None:
        try:
            first = await asyncio.wait_for(
                websocket.receive_json(), services.settings.gateway_ws_auth_timeout_seconds
            )
        except (TimeoutError, ValueError, WebSocketDisconnect):
            return None
        if not isinstance(first, dict) or first.get("type") != "auth":
            return None
        token = first.get("token")
        if not isinstance(token, str):
            return None
    try:
        claims = services.keyring.verify_access_token(token)
        user = await services.accounts.get_recent(
            claims.user_id, services.settings.gateway_user_cache_seconds
        )
    except DomainError:
        return None
    return None if user.disabled else user


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
    """One client's session: its outbox, the receive loop and the push loop.

    The push loop sleeps until something is due (a wake-up in the shared wheel when a bar
    arrives inside the throttle interval), not on a polling tick: with thousands of clients,
    idle ones cost nothing.
    """

    def __init__(self, websocket: WebSocket, services: GatewayServices, symbol: str) -> None:
        self.websocket = websocket
        self.services = services
        self.symbol = symbol
        settings = services.settings
        self.outbox = Outbox(
            settings.gateway_ws_update_seconds, settings.gateway_ws_max_pending_finals
        )
        self.wakeup = asyncio.Event()
        self.armed_at: float | None = None  # when the pending wheel wake-up is due
        self.beat: asyncio.TimerHandle | None = None
        self.push_task: asyncio.Task[None] | None = None
        self.alerts: list[AlertEventOut] = []
        self.indicators: list[dict[str, Any]] = []
        self._bars_sent = services.metrics.ws_messages.labels(type="bars")

    def on_bar(self, bar: market_pb2.Bar) -> None:
        """Upstream listener: buffer, never block."""
        due = self.outbox.offer(bar, time.monotonic())
        if due is None:
            return
        if bar.final and self.outbox.overflowing():
            self.wakeup.set()  # the push loop ends the connection
        else:
            self.arm(due)

    def arm(self, due: float | None = None) -> None:
        """Wake the push loop when the earliest pending update (or `due`) is due."""
        if self.wakeup.is_set():
            return
        if due is None:
            due = self.outbox.next_due()
            if due is None:
                return
        if self.armed_at is not None and self.armed_at <= due:
            return  # an earlier wake-up is pending already
        now = time.monotonic()
        if due <= now:
            self.wakeup.set()
        else:
            self.armed_at = due
            loop_time = asyncio.get_running_loop().time()
            self.services.wake_wheel.call_at(loop_time + (due - now), self.fire)

    def fire(self) -> None:
        """A throttle interval passed (a superseded wake-up only wakes the loop once more)."""
        self.armed_at = None
        self.wakeup.set()

    def on_indicators(self, message: dict[str, Any]) -> None:
        """Indicator listener: keep the subscribed timeframes' rows, never block."""
        if message["timeframe"] in self.outbox.timeframes:
            self.indicators.append(message)
            self.wakeup.set()

    def too_slow(self) -> bool:
        """True when final bars or indicator rows pile up past the bound."""
        bound = self.services.settings.gateway_ws_max_pending_finals
        return self.outbox.overflowing() or len(self.indicators) > bound

    def on_alert(self, event: AlertEventOut) -> None:
        """Alert-feed listener: buffer, never block."""
        self.alerts.append(event)
        self.wakeup.set()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; a client that cannot take it in time is too slow."""
        await self.send_text(message["type"], json.dumps(message))

    async def send_text(self, kind: str, text: str) -> None:
        """Send an encoded message of type `kind` within the send timeout."""
        async with asyncio.timeout(self.services.settings.gateway_ws_send_timeout_seconds):
            await self.websocket.send_text(text)
        self.services.metrics.ws_messages.labels(type=kind).inc()

    async def push_bars(self, text: str) -> None:
        """Send a `bars` message; the watchdog cancels this (push) task if the client stops
        reading, and the session then closes it as too slow."""
        watchdog = self.services.send_watchdog
        task = self.push_task
        assert task is not None
        watchdog.sending(task, self.services.settings.gateway_ws_send_timeout_seconds)
        try:
            await self.websocket.send_text(text)
        finally:
            watchdog.sent(task)
        self._bars_sent.inc()

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
                    self.outbox.subscribe(label)
                    feeds.subscribe(self.symbol, BY_LABEL[label].proto, self.on_bar)
                else:
                    self.outbox.unsubscribe(label)
                    feeds.unsubscribe(self.symbol, BY_LABEL[label].proto, self.on_bar)
            await self.send(
                {"type": "subscribed", "symbol": self.symbol, "timeframes": self.outbox.timeframes}
            )

    async def push_loop(self) -> None:
        """Push due updates and heartbeats; return (to be closed) when the client lags."""
        settings = self.services.settings
        encoder = self.services.push_encoder
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
                for label, bars in self.outbox.due(time.monotonic()):
                    await self.push_bars(encoder.bars_message(self.symbol, label, bars))
                while self.indicators:
                    await self.send(self.indicators.pop(0))
                if loop.time() >= next_beat:
                    await self.send({"type": "heartbeat", "time": datetime.now(UTC).isoformat()})
                    next_beat = loop.time() + settings.gateway_ws_heartbeat_seconds
                    self.beat = loop.call_at(next_beat, self.wakeup.set)
            except TimeoutError:
                return
            self.arm()  # what arrived while sending, or a timeframe not due yet

    def stop(self) -> None:
        """Cancel the heartbeat timer (a pending wheel wake-up just sets a dead event)."""
        if self.beat is not None:
            self.beat.cancel()
            self.beat = None


@router.websocket("/ws/{symbol}")
async def bars_socket(websocket: WebSocket, symbol: str) -> None:
    """Live bars of `symbol`: authenticate, then subscribe to timeframes."""
    services = get_services(websocket)
    if _SYMBOL.match(symbol) is None:
        await websocket.close(POLICY_VIOLATION, "symbol: 1-20 of A-Z, 0-9, '.', '-', '^', '='")
        return
    await websocket.accept()
    user = await _authenticate(websocket, services)
    if user is None:
        await websocket.close(POLICY_VIOLATION, "a valid access token is required")
        return
    decision = await services.rate_limiter.take(f"user:{user.id}", "ws")
    if not decision.allowed:
        await websocket.close(TRY_AGAIN_LATER, "rate limited")
        return
    connection = _Connection(websocket, services, symbol)
    services.ws_feeds.attach(services.fanout, symbol)
    services.indicator_fanout.add(symbol, connection.on_indicators)
    services.alert_feed.add(user.id, connection.on_alert)
    services.metrics.ws_clients.inc()
    receiver = asyncio.create_task(connection.receive_loop())
    pusher = connection.push_task = asyncio.create_task(connection.push_loop())
    try:
        await connection.send({"type": "welcome", "symbol": symbol, "user": user.username})
        done, _ = await asyncio.wait({receiver, pusher}, return_when=asyncio.FIRST_COMPLETED)
        if pusher in done and not receiver.done():
            services.metrics.ws_slow_closed.inc()
            with contextlib.suppress(Exception):  # the socket may already be gone
                await websocket.close(TRY_AGAIN_LATER, "too slow: updates were piling up")
    except (WebSocketDisconnect, TimeoutError):
        pass  # the client left or stopped reading; cleanup below
    finally:
        for task in (receiver, pusher):
            task.cancel()
        await asyncio.gather(receiver, pusher, return_exceptions=True)
        connection.stop()
        await services.ws_feeds.detach(services.fanout, symbol, connection.on_bar)
        await services.indicator_fanout.remove(symbol, connection.on_indicators)
        services.alert_feed.remove(user.id, connection.on_alert)
        services.metrics.ws_clients.dec()
