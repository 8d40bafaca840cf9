"""`/api/v1/auth`: register, login, refresh (rotating), logout, password change, who am I."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, status

from tickmesh.gateway.accounts import IssuedRefreshToken, User
from tickmesh.gateway.deps import CurrentUser, ServicesDep, rate_limited, take_or_refuse
from tickmesh.gateway.problems import PROBLEM_RESPONSES
from tickmesh.gateway.schemas import (
    Credentials,
    PasswordChange,
    RefreshRequest,
    TokenPair,
    UserOut,
)

router = APIRouter(
    prefix="/api/v1/auth",
    tags=["auth"],
    dependencies=[Depends(rate_limited("auth", by_address=True))],
    responses=PROBLEM_RESPONSES,
)


def user_out(user: User) -> UserOut:
    """The API form of a user."""
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_at,
    )


def _token_pair(services: ServicesDep, user: User, refresh: IssuedRefreshToken) -> TokenPair:
    access, expires = services.keyring.issue_access_token(
        user.id, user.username, user.role, generation=user.session_generation
    )
    return TokenPair(
        access_token=access,
        expires_in=int((expires - datetime.now(UTC)).total_seconds()),
        refresh_token=refresh.token,
        refresh_expires_at=refresh.expires_at,
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses={409: PROBLEM_RESPONSES[400] | {"description": "Username taken"}},
)
async def register(body: Credentials, services: ServicesDep) -> UserOut:
    """Create an account with the sign-up role (viewer unless configured otherwise)."""
    user = await services.accounts.register(
        body.username, body.password, services.settings.gateway_signup_role
    )
    return user_out(user)


@router.post("/login")
async def login(body: Credentials, services: ServicesDep) -> TokenPair:
    """Trade a username and password for an access token and a new refresh-token family.

    Besides the address's bucket, each username has its own (any case, from any address):
    guesses at one account spread over many addresses still stop.
    """
    await take_or_refuse(
        services, f"name:{body.username.lower()}", "login", "login attempts for this username"
    )
    user = await services.accounts.authenticate(body.username, body.password)
    refresh = await services.accounts.issue_refresh_token(user.id)
    return _token_pair(services, user, refresh)


@router.post("/refresh")
async def refresh(body: RefreshRequest, services: ServicesDep) -> TokenPair:
    """Rotate a refresh token; presenting a used one revokes its whole family."""
    user, rotated = await services.accounts.rotate_refresh_token(body.refresh_token)
    return _token_pair(services, user, rotated)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, services: ServicesDep) -> None:
    """Revoke the refresh token's family (idempotent: an unknown token is not an error)."""
    await services.accounts.revoke_family(body.refresh_token)


@router.post("/password")
async def change_password(
    body: PasswordChange, user: CurrentUser, services: ServicesDep
) -> TokenPair:
    """Change the caller's password: every session ends (all refresh tokens, all access tokens).

    The answer is a fresh token pair, so the device that made the change stays signed in.
    403 when `current_password` is wrong.
    """
    changed = await services.accounts.change_password(
        user.id, body.current_password, body.new_password
    )
    refresh = await services.accounts.issue_refresh_token(changed.id)
    return _token_pair(services, changed, refresh)


@router.get("/me")
async def me(user: CurrentUser) -> UserOut:
    """The caller's account."""
    return user_out(user)
