"""Item 7 (memory): concurrent password hashing is capped by a setting.

argon2id as configured uses 64 MiB per hash; a burst of logins hashing all at once can take a
gateway's memory. The hasher below is argon2's own, counting how many hashes run at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

import asyncpg
from argon2 import PasswordHasher

from .auth_harness import gateway_app, register


class CountingHasher(PasswordHasher):
    """argon2 (one small round) that records the most hashes or verifies running at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.threads: set[int] = set()

    def _enter(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.threads.add(threading.get_ident())
        time.sleep(0.05)  # long enough for concurrent calls to overlap

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self._enter()
        try:
            return super().hash(password, salt=salt)
        finally:
            self._leave()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self._enter()
        try:
            return super().verify(hash, password)
        finally:
            self._leave()


async def test_concurrent_logins_hash_at_most_the_configured_number_at_once(
    db_pool: asyncpg.Pool, redis_url: str
) -> None:
    hasher = CountingHasher()
    async with gateway_app(
        db_pool,
        redis_url,
        hasher=hasher,
        gateway_password_hash_concurrency=2,
        gateway_login_attempts_per_minute=1000,  # twelve guesses at one name: not throttled
    ) as gateway:
        name = await register(gateway.client)
        hasher.peak = 0
        hasher.threads.clear()  # the start-up dummy hash is not a request's
        replies = await asyncio.gather(
            *(
                gateway.client.post(
                    "/api/v1/auth/login", json={"username": name, "password": f"guess-{i:04d}"}
                )
                for i in range(12)
            )
        )
    assert {reply.status_code for reply in replies} == {401}
    assert hasher.peak == 2, f"{hasher.peak} hashes ran at once"
    # Never on the event loop: a 64 MiB hash there would stall every client of the replica.
    assert threading.get_ident() not in hasher.threads
