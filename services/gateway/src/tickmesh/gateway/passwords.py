"""Password hashing with argon2id, off the event loop and a bounded number at a time.

One hash takes tens of milliseconds and, with argon2's defaults, 64 MiB of memory: a burst of
logins hashing all at once (the thread pool would run up to 32) could take hundreds of MiB, so
a semaphore caps how many run at a time and the rest wait their turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

DEFAULT_CONCURRENCY = 4
_T = TypeVar("_T")


class Passwords:
    """Hash and verify passwords; verifying an unknown user costs the same as a known one."""

    def __init__(
        self, hasher: PasswordHasher | None = None, concurrency: int = DEFAULT_CONCURRENCY
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        # Verified against when the user does not exist, so timing does not reveal usernames.
        self._dummy_hash = self._hasher.hash("tickmesh-no-such-user")

    async def _in_thread(self, work: Callable[..., _T], *args: str) -> _T:
        async with self._slots:
            return await asyncio.to_thread(work, *args)

    async def hash(self, password: str) -> str:
        """The argon2id hash of `password`."""
        return await self._in_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches `stored_hash` (None: no such user, always False)."""
        target = self._dummy_hash if stored_hash is None else stored_hash
        try:
            matched = await self._in_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(matched) and stored_hash is not None
