"""The user row read for a request is reused only for `gateway_user_cache_seconds`."""

from __future__ import annotations

import asyncio

from .conftest import GatewayFactory


async def test_user_changed_elsewhere_loses_access_within_the_bound(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(gateway_user_cache_seconds=0.5)
    viewer = await gateway.user()
    assert (await gateway.client.get("/api/v1/auth/me", headers=viewer.headers)).status_code == 200
    # Another replica (or an operator) disables the user: this replica's cache does not know.
    await gateway.services.pool.execute("UPDATE users SET disabled = true WHERE id = $1", viewer.id)
    await asyncio.sleep(0.6)  # past the bound
    reply = await gateway.client.get("/api/v1/auth/me", headers=viewer.headers)
    assert reply.status_code == 401
    assert reply.json()["detail"] == "account disabled"


async def test_change_through_this_replica_applies_at_once(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(gateway_user_cache_seconds=60)
    viewer = await gateway.user()
    assert (await gateway.client.get("/api/v1/auth/me", headers=viewer.headers)).status_code == 200
    await gateway.services.accounts.update(viewer.id, None, True)
    reply = await gateway.client.get("/api/v1/auth/me", headers=viewer.headers)
    assert reply.status_code == 401
    assert reply.json()["detail"] == "account disabled"
