"""`/api/v1/users`: admins list users and change roles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from tickmesh.gateway.deps import AdminUser, ServicesDep, rate_limited
from tickmesh.gateway.problems import (
    FORBIDDEN_RESPONSES,
    NOT_FOUND_RESPONSES,
    PROBLEM_RESPONSES,
)
from tickmesh.gateway.routes.auth import user_out
from tickmesh.gateway.schemas import UserOut, UserUpdate

router = APIRouter(
    prefix="/api/v1/users",
    tags=["users"],
    dependencies=[Depends(rate_limited("api"))],
    responses=PROBLEM_RESPONSES | FORBIDDEN_RESPONSES,
)

UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("")
async def list_users(admin: AdminUser, services: ServicesDep) -> list[UserOut]:
    """Every user (admins only)."""
    return [user_out(user) for user in await services.accounts.list_all()]


@router.patch("/{user_id}", responses=NOT_FOUND_RESPONSES)
async def update_user(
    user_id: UserId, body: UserUpdate, admin: AdminUser, services: ServicesDep
) -> UserOut:
    """Change a user's role or disable them (admins only)."""
    return user_out(await services.accounts.update(user_id, body.role, body.disabled))
