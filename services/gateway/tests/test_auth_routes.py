"""Auth over the real app: register, login, refresh rotation and reuse, logout, roles."""

from __future__ import annotations

import secrets

from .conftest import Gateway

PROBLEM = "application/problem+json"


async def test_register_then_login_returns_tokens_and_me(gateway: Gateway) -> None:
    name = f"alice{secrets.token_hex(4)}"
    created = await gateway.client.post(
        "/api/v1/auth/register", json={"username": name, "password": "s3cret-pass"}
    )
    assert created.status_code == 201
    assert created.json()["role"] == "viewer"
    login = await gateway.client.post(
        "/api/v1/auth/login", json={"username": name, "password": "s3cret-pass"}
    )
    assert login.status_code == 200
    tokens = login.json()
    assert tokens["token_type"] == "bearer"
    assert 3590 <= tokens["expires_in"] <= 3600
    me = await gateway.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["username"] == name


async def test_register_taken_username_is_409_problem(gateway: Gateway) -> None:
    user = await gateway.user()
    again = await gateway.client.post(
        "/api/v1/auth/register", json={"username": user.username, "password": "another-pass"}
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert "taken" in again.json()["detail"]


async def test_login_wrong_password_is_401_problem(gateway: Gateway) -> None:
    user = await gateway.user()
    reply = await gateway.client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": "wrong-password"}
    )
    assert reply.status_code == 401
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["detail"] == "wrong username or password"


async def test_register_short_password_is_422_naming_field(gateway: Gateway) -> None:
    reply = await gateway.client.post(
        "/api/v1/auth/register", json={"username": "bobby", "password": "short"}
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["status"] == 422
    assert "body.password" in body["detail"]


async def test_refresh_rotates_and_old_token_reuse_revokes_family(gateway: Gateway) -> None:
    user = await gateway.user()
    first = await gateway.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert first.status_code == 200
    rotated = first.json()["refresh_token"]
    assert rotated != user.refresh_token
    reuse = await gateway.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert reuse.status_code == 401
    assert "reuse detected" in reuse.json()["detail"]
    # The thief's reuse also killed the legitimate holder's newer token.
    after = await gateway.client.post("/api/v1/auth/refresh", json={"refresh_token": rotated})
    assert after.status_code == 401


async def test_logout_revokes_refresh_token(gateway: Gateway) -> None:
    user = await gateway.user()
    out = await gateway.client.post(
        "/api/v1/auth/logout", json={"refresh_token": user.refresh_token}
    )
    assert out.status_code == 204
    reply = await gateway.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert reply.status_code == 401


async def test_disabled_user_access_token_stops_working(gateway: Gateway) -> None:
    user = await gateway.user()
    admin = await gateway.user("admin")
    changed = await gateway.client.patch(
        f"/api/v1/users/{user.id}", json={"disabled": True}, headers=admin.headers
    )
    assert changed.status_code == 200
    me = await gateway.client.get("/api/v1/auth/me", headers=user.headers)
    assert me.status_code == 401


async def test_viewer_calling_admin_route_is_403(gateway: Gateway) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.post(
        "/api/v1/symbols",
        json={"exchange": "binance_spot", "symbol": "BTCUSDT", "asset_type": "crypto"},
        headers=viewer.headers,
    )
    assert reply.status_code == 403
    assert "admin" in reply.json()["detail"]
    listing = await gateway.client.get("/api/v1/users", headers=viewer.headers)
    assert listing.status_code == 403


async def test_role_guarded_operations_document_403(gateway: Gateway) -> None:
    # Found by tests/security/test_openapi_fuzz.py: a viewer's 403 was not in the OpenAPI.
    paths = gateway.app.openapi()["paths"]
    guarded = [
        ("/api/v1/users", "get"),
        ("/api/v1/users/{user_id}", "patch"),
        ("/api/v1/symbols", "post"),
        ("/api/v1/symbols/{instrument}", "delete"),
        ("/api/v1/alerts", "post"),
        ("/api/v1/alerts/{alert_id}", "put"),
    ]
    for path, method in guarded:
        forbidden = paths[path][method]["responses"].get("403")
        assert forbidden is not None, f"{method.upper()} {path}"
        assert PROBLEM in forbidden["content"]
    assert "403" not in paths["/api/v1/symbols"]["get"]["responses"]  # any signed-in user


async def test_admin_changing_an_unknown_user_is_a_documented_404(gateway: Gateway) -> None:
    # Found by tests/security/test_openapi_fuzz.py: the 404 was not in the OpenAPI.
    admin = await gateway.user("admin")
    reply = await gateway.client.patch(
        "/api/v1/users/2147483647", json={"disabled": True}, headers=admin.headers
    )
    assert reply.status_code == 404
    assert reply.headers["content-type"] == PROBLEM
    documented = gateway.app.openapi()["paths"]["/api/v1/users/{user_id}"]["patch"]
    assert PROBLEM in documented["responses"]["404"]["content"]
