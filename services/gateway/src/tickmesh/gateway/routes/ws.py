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
from tickmesh.gateway.market_views import bar_message
from tickmesh.gateway.outbox import Outbox
from tickmesh.gateway.schemas import SYMBOL_PATTERN, AlertEventOut
from tickmesh.v1 import market_pb2

router = APIRouter(tags=["websocket"])

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
_SYMBOL = re.compile(SYMBOL_PATTERN)
_TICK_SECONDS = 0.05


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
        user = await services.accounts.get(claims.user_id)
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
    """One client's session: its outbox, the receive loop and the push loop."""

    def __init__(self, websocket: WebSocket, services: GatewayServices, symbol: str) -> None:
        self.websocket = websocket
        self.services = services
        self.symbol = symbol
        settings = services.settings
        self.outbox = Outbox(
            settings.gateway_ws_update_seconds, settings.gateway_ws_max_pending_finals
        )
        self.wakeup = asyncio.Event()
        self.alerts: list[AlertEventOut] = []
        self.indicators: list[dict[str, Any]] = []

    def on_bar(self, bar: market_pb2.Bar) -> None:
        """Upstream listener: buffer, never block."""
        self.outbox.offer(bar)
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
        await asyncio.wait_for(
            self.websocket.send_text(json.dumps(message)),
            self.services.settings.gateway_ws_send_timeout_seconds,
        )
        self.services.metrics.ws_messages.labels(type=message["type"]).inc()

    async def receive_loop(self) -> None:
        """Handle subscribe / unsubscribe / ping messages until the client leaves."""
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
                else:
                    self.outbox.unsubscribe(label)
            await self.send(
                {"type": "subscribed", "symbol": self.symbol, "timeframes": self.outbox.timeframes}
            )

    async def push_loop(self) -> None:
        """Push due updates and heartbeats; return (to be closed) when the client lags."""
        settings = self.services.settings
        last_beat = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), _TICK_SECONDS)
            self.wakeup.clear()
            if self.too_slow():
                return
            now = time.monotonic()
            try:
                while self.alerts:
                    event = self.alerts.pop(0)
                    await self.send({"type": "alert", **event.model_dump(mode="json")})
                for label, bars in self.outbox.due(now):
                    await self.send(
                        {
                            "type": "bars",
                            "symbol": self.symbol,
                            "timeframe": label,
                            "bars": [bar_message(bar) for bar in bars],
                        }
                    )
                while self.indicators:
                    await self.send(self.indicators.pop(0))
                if now - last_beat >= settings.gateway_ws_heartbeat_seconds:
                    await self.send({"type": "heartbeat", "time": datetime.now(UTC).isoformat()})
                    last_beat = now
            except TimeoutError:
                return


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
    services.fanout.add(symbol, connection.on_bar)
    services.indicator_fanout.add(symbol, connection.on_indicators)
    services.alert_feed.add(user.id, connection.on_alert)
    services.metrics.ws_clients.inc()
    receiver = asyncio.create_task(connection.receive_loop())
    pusher = asyncio.create_task(connection.push_loop())
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
        await services.fanout.remove(symbol, connection.on_bar)
        await services.indicator_fanout.remove(symbol, connection.on_indicators)
        services.alert_feed.remove(user.id, connection.on_alert)
        services.metrics.ws_clients.dec()
