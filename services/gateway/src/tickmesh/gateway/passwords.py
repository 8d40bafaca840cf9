"""Password hashing with argon2id, off the event loop (one hash takes tens of milliseconds)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hash and verify passwords; verifying an unknown user costs the same as a known one."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verified against when the user does not exist, so timing does not reveal usernames.
        self._dummy_hash = self._hasher.hash("tickmesh-no-such-user")

    async def hash(self, password: str) -> str:
        """The argon2id hash of `password`."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches `stored_hash` (None: no such user, always False)."""
        target = self._dummy_hash if stored_hash is None else stored_hash
        try:
            matched = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(matched) and stored_hash is not None
