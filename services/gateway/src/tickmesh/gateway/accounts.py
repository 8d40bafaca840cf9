"""Users and refresh tokens in PostgreSQL: sign-up, login, rotation with reuse detection, logout.

Usernames are unique whatever their case (migration 0007) and looked up by `lower(username)`.
A user's `session_generation` ends every session at once: refresh families are revoked and
access tokens issued under an older generation are refused.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg

from tickmesh.core.db.pool import Connection
from tickmesh.core.errors import AlreadyExists, NotFound, PermissionDenied, Unauthenticated
from tickmesh.gateway.passwords import Passwords
from tickmesh.gateway.tokens import AccessClaims, Role, hash_refresh_token, new_refresh_token


@dataclass(frozen=True, slots=True)
class User:
    """One row of `users` without its password hash."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    session_generation: int = 0


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    """A refresh token as handed to the client (the database keeps only its hash)."""

    token: str
    expires_at: datetime


_USER_COLUMNS = "id, username, role, disabled, created_at, session_generation"
_RECENT_USERS = 10_000


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        role=cast(Role, row["role"]),
        disabled=row["disabled"],
        created_at=row["created_at"],
        session_generation=row["session_generation"],
    )


async def _end_sessions(conn: Connection, user_id: int) -> None:
    """Revoke every refresh family of the user and outdate its access tokens (in `conn`'s transaction)."""
    await conn.execute(
        "UPDATE users SET session_generation = session_generation + 1 WHERE id = $1", user_id
    )
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )


class Accounts:
    """The `users` and `refresh_tokens` tables the gateway owns."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        passwords: Passwords,
        refresh_lifetime: timedelta,
        family_lifetime: timedelta | None = None,
    ):
        self._pool = pool
        self._passwords = passwords
        self._refresh_lifetime = refresh_lifetime
        # A login (refresh family) ends this long after it began, however often it rotates.
        self._family_lifetime = family_lifetime or refresh_lifetime
        self._recent: dict[int, tuple[float, User]] = {}

    async def register(self, username: str, password: str, role: Role) -> User:
        """Create a user; AlreadyExists when the name is taken."""
        password_hash = await self._passwords.hash(password)
        row = await self._pool.fetchrow(
            "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3) "
            f"ON CONFLICT DO NOTHING RETURNING {_USER_COLUMNS}",
            username,
            password_hash,
            role,
        )
        if row is None:
            raise AlreadyExists(f"username {username!r} is taken")
        return _user(row)

    @property
    def passwords(self) -> Passwords:
        """The hasher these accounts use (the admin bootstrap verifies with it too)."""
        return self._passwords

    async def find(self, username: str) -> tuple[User, str] | None:
        """The user of this name in any case, with its password hash; None when there is none."""
        row = await self._pool.fetchrow(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)",
            username,
        )
        return None if row is None else (_user(row), cast(str, row["password_hash"]))

    async def insert_admin(self, username: str, password: str) -> User | None:
        """Create an admin; None when the name (in any case) is already taken. Never updates."""
        password_hash = await self._passwords.hash(password)
        row = await self._pool.fetchrow(
            "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, 'admin') "
            f"ON CONFLICT DO NOTHING RETURNING {_USER_COLUMNS}",
            username,
            password_hash,
        )
        return None if row is None else _user(row)

    async def reset_to_admin(self, user_id: int, password: str) -> User:
        """Give the user `password`, the admin role and no sessions (enabled again)."""
        password_hash = await self._passwords.hash(password)
        async with self._pool.acquire() as conn, conn.transaction():
            await _end_sessions(conn, user_id)
            row = await conn.fetchrow(
                "UPDATE users SET password_hash = $2, role = 'admin', disabled = false "
                f"WHERE id = $1 RETURNING {_USER_COLUMNS}",
                user_id,
                password_hash,
            )
        if row is None:
            raise NotFound(f"user {user_id} does not exist")
        self._recent.pop(user_id, None)
        return _user(row)

    async def change_password(self, user_id: int, current: str, new: str) -> User:
        """Set a new password after checking the current one; every session of the user ends.

        PermissionDenied (not Unauthenticated) on a wrong current password: the caller's token
        is fine, and a 401 would send clients into renewing it.
        """
        stored = await self._pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
        if stored is None:
            raise Unauthenticated("user no longer exists")
        if not await self._passwords.verify(cast(str, stored), current):
            raise PermissionDenied("the current password is wrong")
        new_hash = await self._passwords.hash(new)
        async with self._pool.acquire() as conn, conn.transaction():
            await _end_sessions(conn, user_id)
            row = await conn.fetchrow(
                f"UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING {_USER_COLUMNS}",
                user_id,
                new_hash,
            )
        if row is None:
            raise Unauthenticated("user no longer exists")
        self._recent.pop(user_id, None)
        return _user(row)

    async def authenticate(self, username: str, password: str) -> User:
        """The user whose credentials these are; one Unauthenticated for every kind of failure."""
        row = await self._pool.fetchrow(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)",
            username,
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

    async def active_user(self, claims: AccessClaims, max_age_seconds: float) -> User:
        """The user behind verified claims, if it may still act: exists, enabled, not signed out."""
        try:
            user = await self.get_recent(claims.user_id, max_age_seconds)
        except NotFound:
            raise Unauthenticated("user no longer exists") from None
        if user.disabled:
            raise Unauthenticated("account disabled")
        if claims.generation != user.session_generation:
            raise Unauthenticated("session ended (password changed); log in again")
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
        issued: IssuedRefreshToken | None = None
        reused = False
        user_row: asyncpg.Record | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, user_id, family_id, expires_at, revoked_at, "
                "(SELECT min(f.issued_at) FROM refresh_tokens f WHERE f.family_id = t.family_id)"
                " AS family_started_at "
                "FROM refresh_tokens t WHERE token_hash = $1 FOR UPDATE",
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
            elif row["family_started_at"] + self._family_lifetime <= datetime.now(UTC):
                raise Unauthenticated("this login is older than its longest lifetime; log in again")
            else:
                issued = self._new_token(row["family_started_at"])
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
        if reused or user_row is None or issued is None:
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

    def _new_token(self, family_started_at: datetime | None = None) -> IssuedRefreshToken:
        """A token living `refresh_lifetime`, but never past its family's end."""
        now = datetime.now(UTC)
        family_end = (family_started_at or now) + self._family_lifetime
        return IssuedRefreshToken(
            new_refresh_token(), min(now + self._refresh_lifetime, family_end)
        )
