"""Users and refresh tokens in PostgreSQL: sign-up, login, rotation with reuse detection, logout."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg

from tickmesh.core.errors import AlreadyExists, NotFound, Unauthenticated
from tickmesh.gateway.passwords import Passwords
from tickmesh.gateway.tokens import Role, hash_refresh_token, new_refresh_token


@dataclass(frozen=True, slots=True)
class User:
    """One row of `users` without its password hash."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    """A refresh token as handed to the client (the database keeps only its hash)."""

    token: str
    expires_at: datetime


_USER_COLUMNS = "id, username, role, disabled, created_at"
_RECENT_USERS = 10_000


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        role=cast(Role, row["role"]),
        disabled=row["disabled"],
        created_at=row["created_at"],
    )


class Accounts:
    """The `users` and `refresh_tokens` tables the gateway owns."""

    def __init__(self, pool: asyncpg.Pool, passwords: Passwords, refresh_lifetime: timedelta):
        self._pool = pool
        self._passwords = passwords
        self._refresh_lifetime = refresh_lifetime
        self._recent: dict[int, tuple[float, User]] = {}

    async def register(self, username: str, password: str, role: Role) -> User:
        """Create a user; AlreadyExists when the name is taken."""
        password_hash = await self._passwords.hash(password)
        row = await self._pool.fetchrow(
            "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3) "
            f"ON CONFLICT (username) DO NOTHING RETURNING {_USER_COLUMNS}",
            username,
            password_hash,
            role,
        )
        if row is None:
            raise AlreadyExists(f"username {username!r} is taken")
        return _user(row)

    async def ensure_admin(self, username: str, password: str) -> User:
        """Create the bootstrap admin if missing, or make the existing user an admin."""
        password_hash = await self._passwords.hash(password)
        row = await self._pool.fetchrow(
            "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, 'admin') "
            "ON CONFLICT (username) DO UPDATE SET role = 'admin' "
            f"RETURNING {_USER_COLUMNS}",
            username,
            password_hash,
        )
        assert row is not None  # an upsert with RETURNING always yields the row
        return _user(row)

    async def authenticate(self, username: str, password: str) -> User:
        """The user whose credentials these are; one Unauthenticated for every kind of failure."""
        row = await self._pool.fetchrow(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = $1", username
        )
        stored = None if row is None else cast(str, row["password_hash"])
        if not await self._passwords.verify(stored, password) or row is None:
            raise Unauthenticated("wrong username or password")
        user = _user(row)
        if user.disabled:
            raise Unauthenticated("wrong username or password")
        return user

    async def get(self, user_id: int) -> User:
        """The user with this id; NotFound otherwise."""
        row = await self._pool.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        return _user(row)

    async def get_recent(self, user_id: int, max_age_seconds: float) -> User:
        """The user, re-read when the last read is older than `max_age_seconds`; NotFound otherwise."""
        now = time.monotonic()
        cached = self._recent.get(user_id)
        if cached is not None and now - cached[0] <= max_age_seconds:
            return cached[1]
        user = await self.get(user_id)
        if len(self._recent) >= _RECENT_USERS:
            self._recent.clear()  # a crude bound: refilling costs one query per active user
        self._recent[user_id] = (now, user)
        return user

    async def list_all(self) -> list[User]:
        """Every user, by id."""
        rows = await self._pool.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY id")
        return [_user(row) for row in rows]

    async def update(self, user_id: int, role: Role | None, disabled: bool | None) -> User:
        """Change a user's role or disabled flag; disabling revokes every refresh token."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE users SET role = COALESCE($2, role), disabled = COALESCE($3, disabled) "
                f"WHERE id = $1 RETURNING {_USER_COLUMNS}",
                user_id,
                role,
                disabled,
            )
            if row is None:
                raise NotFound(f"user {user_id} does not exist")
            if disabled:
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = now() "
                    "WHERE user_id = $1 AND revoked_at IS NULL",
                    user_id,
                )
        # After the commit: a read racing it may have cached the old row a moment ago.
        self._recent.pop(user_id, None)
        return _user(row)

    async def issue_refresh_token(self, user_id: int) -> IssuedRefreshToken:
        """Start a new token family (one per login)."""
        issued = self._new_token()
        await self._pool.execute(
            "INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at) "
            "VALUES ($1, $2, $3, $4)",
            user_id,
            hash_refresh_token(issued.token),
            uuid.uuid4(),
            issued.expires_at,
        )
        return issued

    async def rotate_refresh_token(self, token: str) -> tuple[User, IssuedRefreshToken]:
        """Trade a refresh token for a new one of the same family.

        A token presented twice means it leaked (or the client raced itself): the whole
        family is revoked, so neither the thief nor the owner can go on without a new login.
        """
        issued = self._new_token()
        reused = False
        user_row: asyncpg.Record | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, user_id, family_id, expires_at, revoked_at FROM refresh_tokens "
                "WHERE token_hash = $1 FOR UPDATE",
                hash_refresh_token(token),
            )
            if row is None:
                raise Unauthenticated("unknown refresh token")
            if row["revoked_at"] is not None:
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = now() "
                    "WHERE family_id = $1 AND revoked_at IS NULL",
                    row["family_id"],
                )
                reused = True
            elif row["expires_at"] <= datetime.now(UTC):
                raise Unauthenticated("refresh token expired")
            else:
                user_row = await conn.fetchrow(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", row["user_id"]
                )
                if user_row is None or user_row["disabled"]:
                    raise Unauthenticated("account disabled")
                new_id = await conn.fetchval(
                    "INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at) "
                    "VALUES ($1, $2, $3, $4) RETURNING id",
                    row["user_id"],
                    hash_refresh_token(issued.token),
                    row["family_id"],
                    issued.expires_at,
                )
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = now(), replaced_by = $2 WHERE id = $1",
                    row["id"],
                    new_id,
                )
        # Raised after the commit so the family stays revoked.
        if reused or user_row is None:
            raise Unauthenticated(
                "refresh token reuse detected: every token of this login was revoked; log in again"
            )
        return _user(user_row), issued

    async def revoke_family(self, token: str) -> bool:
        """Log out: revoke the token's whole family; False when the token is unknown."""
        family = await self._pool.fetchval(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = $1", hash_refresh_token(token)
        )
        if family is None:
            return False
        await self._pool.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
            family,
        )
        return True

    def _new_token(self) -> IssuedRefreshToken:
        return IssuedRefreshToken(new_refresh_token(), datetime.now(UTC) + self._refresh_lifetime)
