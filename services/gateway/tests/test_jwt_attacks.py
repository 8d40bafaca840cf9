"""Forged, tampered, expired and misused tokens are all refused with 401."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tickmesh.core.errors import Unauthenticated
from tickmesh.gateway.tokens import ISSUER, KeyRing

from .conftest import TEST_SECRET, Gateway, gateway_settings


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(user_id: int, role: str = "admin", **extra: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "sub": str(user_id),
        "name": "x",
        "role": role,
        "typ": "access",
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    } | extra


async def _me_status(gateway: Gateway, token: str) -> int:
    reply = await gateway.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    return reply.status_code


async def test_alg_none_token_is_rejected(gateway: Gateway) -> None:
    user = await gateway.user()
    token = (
        _b64({"alg": "none", "typ": "JWT", "kid": "primary"}) + "." + _b64(_claims(user.id)) + "."
    )
    assert await _me_status(gateway, token) == 401


async def test_token_signed_with_wrong_key_is_rejected(gateway: Gateway) -> None:
    user = await gateway.user()
    token = jwt.encode(
        _claims(user.id), "another-secret-another-secret-xx", headers={"kid": "primary"}
    )
    assert await _me_status(gateway, token) == 401


async def test_token_with_unknown_kid_is_rejected(gateway: Gateway) -> None:
    user = await gateway.user()
    token = jwt.encode(_claims(user.id), TEST_SECRET, headers={"kid": "elsewhere"})
    assert await _me_status(gateway, token) == 401


async def test_tampered_payload_is_rejected(gateway: Gateway) -> None:
    viewer = await gateway.user()
    header, _, signature = viewer.access_token.split(".")
    forged = f"{header}.{_b64(_claims(viewer.id, role='admin'))}.{signature}"
    reply = await gateway.client.get("/api/v1/users", headers={"Authorization": f"Bearer {forged}"})
    assert reply.status_code == 401


async def test_expired_token_is_rejected_saying_expired(gateway: Gateway) -> None:
    user = await gateway.user()
    token, _ = gateway.services.keyring.issue_access_token(
        user.id, user.username, "viewer", now=datetime.now(UTC) - timedelta(hours=2)
    )
    reply = await gateway.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 401
    assert reply.json()["detail"] == "access token expired"
    assert reply.headers["www-authenticate"] == "Bearer"


async def test_token_with_other_algorithm_is_rejected_even_with_right_key(
    gateway: Gateway,
) -> None:
    user = await gateway.user()
    token = jwt.encode(_claims(user.id), TEST_SECRET, algorithm="HS512", headers={"kid": "primary"})
    assert await _me_status(gateway, token) == 401


async def test_missing_and_garbage_tokens_are_rejected(gateway: Gateway) -> None:
    assert (await gateway.client.get("/api/v1/auth/me")).status_code == 401
    assert await _me_status(gateway, "not.a.jwt") == 401
    assert await _me_status(gateway, "") == 401


def test_keyring_rotation_accepts_previous_key_and_signs_with_active() -> None:
    old = KeyRing.from_settings(gateway_settings(gateway_jwt_kid="2026-10"))
    rotated = KeyRing.from_settings(
        gateway_settings(
            gateway_jwt_secret="a-brand-new-secret-for-november-2026",
            gateway_jwt_kid="2026-11",
            gateway_jwt_previous_keys={"2026-10": TEST_SECRET},
        )
    )
    old_token, _ = old.issue_access_token(7, "alice", "trader")
    assert rotated.verify_access_token(old_token).user_id == 7
    new_token, _ = rotated.issue_access_token(7, "alice", "trader")
    assert jwt.get_unverified_header(new_token)["kid"] == "2026-11"
    with pytest.raises(Unauthenticated):
        old.verify_access_token(new_token)


def test_keyring_refuses_refresh_typed_token() -> None:
    ring = KeyRing.from_settings(gateway_settings())
    token = jwt.encode(_claims(1, typ="refresh"), TEST_SECRET, headers={"kid": "primary"})
    with pytest.raises(Unauthenticated, match="not an access token"):
        ring.verify_access_token(token)
