"""Open WebSocket sessions ended when their access token expires or their user is disabled.

A socket is authenticated once, at its start; without this it would stream for as long as
the client keeps it open. Two checks, chosen for what each costs:

- Expiry is known at the start (the token's `exp`): one timer per session ends it then,
  exactly, with no polling.
- Disabling can happen through any replica or straight in the database, so no single
  process sees every change as it happens. One task per replica re-reads the users of its
  open sessions every `gateway_ws_user_check_seconds` in a single query (one query per
  interval whatever the number of sockets) and ends the sessions of users who are disabled
  or gone. A Redis pub/sub signal would be faster but would miss changes made in SQL and
  would need every writer of `users` to publish; the poll bounds the delay either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter

log = logging.getLogger(__name__)

# What a session is told when it must end: (refusal reason label, close reason text).
Ending = Callable[[str, str], None]


@dataclass(eq=False)
class Session:
    """One open socket of a user, and how to end it."""

    user_id: int
    end: Ending
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)


class SessionWatch:
    """This replica's open sessions by user; ends those whose token or user is no longer good."""

    def __init__(self, pool: asyncpg.Pool, interval_seconds: float, errors: Counter) -> None:
        self._pool = pool
        self._interval = interval_seconds
        self._errors = errors
        self._by_user: dict[int, dict[Session, None]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def add(self, user_id: int, expires_at: datetime, end: Ending) -> Session:
        """Watch a new session of `user_id` whose token expires at `expires_at`."""
        session = Session(user_id, end)
        loop = asyncio.get_running_loop()
        delay = (expires_at - datetime.now(UTC)).total_seconds()
        session.expiry = loop.call_later(
            max(delay, 0.0), end, "token_expired", "access token expired"
        )
        self._by_user.setdefault(user_id, {})[session] = None
        if self._sweeper is None or self._sweeper.done():
            # Started with the first session, ends with the last: no task on an idle gateway.
            self._sweeper = asyncio.create_task(self._sweep(), name="ws-user-check")
        return session

    def remove(self, session: Session) -> None:
        """Stop watching a session (its socket is closing)."""
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        sessions = self._by_user.get(session.user_id)
        if sessions is not None:
            sessions.pop(session, None)
            if not sessions:
                del self._by_user[session.user_id]

    async def _sweep(self) -> None:
        while self._by_user:
            await asyncio.sleep(self._interval)
            user_ids = list(self._by_user)
            if not user_ids:
                return
            try:
                rows = await self._pool.fetch(
                    "SELECT id FROM users WHERE id = ANY($1::int[]) AND NOT disabled", user_ids
                )
            except (asyncpg.PostgresError, OSError) as error:
                # Sockets stay open through a database outage; the next round checks again.
                self._errors.inc()
                log.warning("could not re-check the users of open WebSockets: %s", error)
                continue
            good = {row["id"] for row in rows}
            for user_id in user_ids:
                if user_id not in good:
                    for session in list(self._by_user.get(user_id, ())):
                        session.end("account_disabled", "account disabled")
