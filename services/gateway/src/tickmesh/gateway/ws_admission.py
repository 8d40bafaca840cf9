"""Admission of a WebSocket client, shared by the live and replay routes.

In order: the per-address cap on unauthenticated sockets (HTTP 429 before the upgrade), the
instrument in the path, the access token (query parameter or a first `auth` message), the
per-user cap on sockets and the instrument registry. Each refusal is counted and says why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from fastapi import WebSocket, WebSocketDisconnect
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocketState

from tickmesh.core.errors import DomainError, Unavailable
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.gateway.accounts import User
from tickmesh.gateway.deps import GatewayServices
from tickmesh.gateway.frame_protocol import FrameWriter
from tickmesh.gateway.settings import query_tokens_allowed
from tickmesh.gateway.ws_guard import WsGuard

log = logging.getLogger("tickmesh.gateway.ws")

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
MESSAGE_TOO_BIG = 1009  # uvicorn closes with it past gateway_ws_max_message_bytes
CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes
TOKEN_REQUIRED = "a valid access token is required"
# Production refuses tokens in URLs (proxies log them); the reason says what to send instead.
QUERY_TOKEN_REFUSED = 'no ?token= here: send {"type": "auth", "token": ...} first'


@dataclass(frozen=True)
class Admission:
    """An admitted client: who, until when, for which instrument, and its frame writer."""

    user: User
    expires_at: datetime
    instrument: InstrumentId
    frames: FrameWriter


def close_reason(text: str) -> str:
    """`text` cut to what a close frame carries (whole characters)."""
    return text.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")


def client_address(websocket: WebSocket) -> str:
    """The client's address, as uvicorn reports it (after its trusted-proxy handling)."""
    return websocket.client.host if websocket.client is not None else "unknown"


@asynccontextmanager
async def admitted(
    websocket: WebSocket, services: GatewayServices, instrument: str, route: str
) -> AsyncIterator[Admission | None]:
    """The admitted client of `route`, or None when it was refused (and told why)."""
    guard = services.ws_guard
    address = client_address(websocket)
    if not guard.preauth.take(address):
        guard.refused("preauth_per_ip", address, f"over {guard.preauth.limit} unauthenticated")
        # Refused before the upgrade: the cheapest answer, and one a flood cannot hold open.
        await websocket.send_denial_response(
            PlainTextResponse(
                "too many unauthenticated WebSockets from this address",
                status_code=429,
                headers={"Retry-After": "1"},
            )
        )
        yield None
        return
    try:
        opened = await _open(websocket, services, instrument, address, route)
    finally:
        guard.preauth.give_back(address)
    if opened is None:
        yield None
        return
    if not guard.per_user.take(opened.user.id):
        text = f"too many connections for this user (limit {guard.per_user.limit})"
        guard.refused("connections_per_user", f"user {opened.user.username}", text)
        await websocket.close(POLICY_VIOLATION, text)
        yield None
        return
    try:
        known = await _registered(websocket, guard, opened.instrument, opened.user)
        yield opened if known else None
    finally:
        guard.per_user.give_back(opened.user.id)


async def _authenticate(
    websocket: WebSocket, services: GatewayServices, address: str
) -> tuple[User, datetime] | str:
    """The user of the `token` query parameter, or of a first {"type": "auth"} message, and
    when that token expires; else why not."""
    token = websocket.query_params.get("token")
    if token is not None and not query_tokens_allowed(services.settings):
        return QUERY_TOKEN_REFUSED
    if token is None:
        try:
            first = await asyncio.wait_for(
                websocket.receive_json(), services.settings.gateway_ws_auth_timeout_seconds
            )
        except WebSocketDisconnect as gone:
            if gone.code == MESSAGE_TOO_BIG:
                services.ws_guard.refused("message_too_big", address, "oversized first message")
            return TOKEN_REQUIRED
        except (TimeoutError, ValueError):
            return TOKEN_REQUIRED
        if not isinstance(first, dict) or first.get("type") != "auth":
            return TOKEN_REQUIRED
        token = first.get("token")
        if not isinstance(token, str):
            return TOKEN_REQUIRED
    try:
        claims = services.keyring.verify_access_token(token)
        user = await services.accounts.active_user(
            claims, services.settings.gateway_user_cache_seconds
        )
    except DomainError:
        return TOKEN_REQUIRED
    return (user, claims.expires_at)


async def _open(
    websocket: WebSocket, services: GatewayServices, instrument: str, address: str, route: str
) -> Admission | None:
    """Accept and authenticate (the pre-authentication part); None when closed here."""
    try:
        parsed = InstrumentId.parse(instrument)
    except InstrumentError as error:
        services.metrics.invalid_input.labels(route=route, location="path").inc()
        log.info("WebSocket refused: path.instrument: %s", error)
        # Accepted first so the client reads why (a refused handshake is a bare HTTP 403).
        await websocket.accept()
        await websocket.close(POLICY_VIOLATION, close_reason(f"instrument: {error}"))
        return None
    frames = FrameWriter.of(websocket)
    await websocket.accept()
    if frames is None:
        # Served without tickmesh.gateway's protocol (the gateway's own main sets it).
        await websocket.close(INTERNAL_ERROR, "this server cannot write WebSocket frames directly")
        return None
    authenticated = await _authenticate(websocket, services, address)
    if isinstance(authenticated, str):
        if websocket.client_state is not WebSocketState.DISCONNECTED:
            await websocket.close(POLICY_VIOLATION, close_reason(authenticated))
        return None
    return Admission(authenticated[0], authenticated[1], parsed, frames)


async def _registered(
    websocket: WebSocket, guard: WsGuard, instrument: InstrumentId, user: User
) -> bool:
    """True when `instrument` is registered; otherwise the socket is told why and closed."""
    try:
        known = await guard.registry.contains(instrument)
    except Unavailable as error:
        guard.refused("registry_unavailable", f"user {user.username}", str(error))
        await websocket.close(TRY_AGAIN_LATER, "instrument registry unavailable; try again later")
        return False
    if known:
        return True
    text = f"instrument {instrument} is not registered"
    guard.refused("unknown_instrument", f"user {user.username}", text)
    await websocket.send_text(json.dumps({"type": "error", "detail": text}))
    await websocket.close(POLICY_VIOLATION, close_reason(text))
    return False


async def close_or_abort(
    websocket: WebSocket, services: GatewayServices, frames: FrameWriter, code: int, text: str
) -> None:
    """Close with `code`; a client that does not take even the close frame is dropped."""
    try:
        async with asyncio.timeout(services.settings.gateway_ws_send_timeout_seconds):
            await websocket.close(code, close_reason(text))
    except TimeoutError:
        frames.abort()  # it reads nothing, not even the close frame
    except Exception:  # the client may be gone already; the cleanup follows
        pass
