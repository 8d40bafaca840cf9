"""Issue 13, item 7: the socket of a user who is disabled, or whose access token expires, is
closed (1008), rather than streaming on for as long as the client likes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from ..gateway.processes import SECRET
from .ws_harness import WsMesh, next_of, ws_mesh


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WsMesh]:
    """A gateway that re-checks the users of open sockets every half second."""
    async with ws_mesh(
        module_database_url,
        module_redis_url,
        tmp_path_factory.mktemp("ws-revocation"),
        TICKMESH_GATEWAY_WS_USER_CHECK_SECONDS="0.5",
        TICKMESH_GATEWAY_WS_HEARTBEAT_SECONDS="0.5",
    ) as running:
        yield running


def _short_token(user_id: int, seconds: float) -> str:
    """An access token of the gateway's own key that expires in `seconds`."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "name": "short-lived",
        "role": "viewer",
        "typ": "access",
        "iss": "tickmesh-gateway",
        "iat": now,
        "exp": now + timedelta(seconds=seconds),
    }
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "primary"})


async def test_ws_of_a_disabled_user_is_closed_1008(mesh: WsMesh) -> None:
    user_id, token = await mesh.user()
    before = await mesh.refusals("account_disabled")
    async with websockets.connect(mesh.url(token=token)) as ws:
        await next_of(ws, "welcome")
        await mesh.disable(user_id)
        with pytest.raises(ConnectionClosed) as closed:
            await next_of(ws, "never", within=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "disabled" in closed.value.rcvd.reason
    assert await mesh.refusals("account_disabled") == before + 1


async def test_ws_of_an_expired_token_is_closed_1008_naming_the_token(mesh: WsMesh) -> None:
    user_id, _ = await mesh.user()
    before = await mesh.refusals("token_expired")
    async with websockets.connect(mesh.url(token=_short_token(user_id, 3))) as ws:
        await next_of(ws, "welcome")
        await next_of(ws, "heartbeat")  # open and pushing before the expiry
        with pytest.raises(ConnectionClosed) as closed:
            await next_of(ws, "never", within=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    # The dashboard renews its token and reconnects when the reason names the token.
    assert "token" in closed.value.rcvd.reason
    assert "expired" in closed.value.rcvd.reason
    assert await mesh.refusals("token_expired") == before + 1
