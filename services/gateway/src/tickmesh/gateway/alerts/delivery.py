"""Sending webhook and e-mail firings from `alert_events`, with retries, on whichever replica.

The engine only records a firing (delivery 'pending') and wakes this worker. A replica
claims due deliveries under row locks (SKIP LOCKED, so replicas never send one twice at
once) and pushes their next attempt a lease ahead before sending: if it dies mid-send,
another replica (or itself, restarted) sends once the lease runs out. Delivery is therefore
at least once; a firing is never lost with the replica that judged it.

Every attempt is that row's business alone: whatever it raises becomes the row's outcome,
never the worker's death. Attempts run side by side up to a bound, each ending by its
deadline, so a slow target holds one slot and not the others' deliveries. A row is claimed
at most `gateway_webhook_attempts` times, even if attempting it kills the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from tickmesh.gateway.alerts.channels import AlertChannels, Outcome
from tickmesh.gateway.alerts.engine import TRANSIENT
from tickmesh.gateway.alerts.store import (
    ALERT_OWNER_ROLES,
    EVENT_COLUMNS,
    AlertStore,
    event_from_row,
)
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.schemas import AlertOut
from tickmesh.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

BATCH = 20
LEASE_SECONDS = 60.0  # longer than any one attempt (the deadline is at most 30 s)
MAX_BACKOFF_SECONDS = 300.0

# Whose alerts may still send: the owner is enabled and may own alerts (a disabled or
# demoted user's queued firings are dropped, as the engine stops recording new ones).
_OWNER_MAY_SEND = f"""EXISTS (
    SELECT 1 FROM alerts a JOIN users u ON u.id = a.user_id
    WHERE a.id = alert_events.alert_id AND NOT u.disabled
      AND u.role IN ({", ".join(f"'{role}'" for role in ALERT_OWNER_ROLES)})
)"""

_CLAIM = f"""
UPDATE alert_events
SET delivery_attempts = delivery_attempts + 1,
    next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM alert_events
    WHERE delivery = 'pending' AND next_attempt_at <= now() AND delivery_attempts < $3
      AND {_OWNER_MAY_SEND}
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING {EVENT_COLUMNS}, delivery_attempts
"""

# Due rows that must not be attempted again: out of attempts (the last one never reported,
# e.g. the process died in it), or their owner may no longer send.
_GIVE_UP = f"""
UPDATE alert_events SET delivery = 'failed', next_attempt_at = NULL
WHERE delivery = 'pending' AND next_attempt_at <= now()
  AND (delivery_attempts >= $1 OR NOT {_OWNER_MAY_SEND})
RETURNING id, alert_id, delivery_attempts
"""


class AlertDeliveries:
    """The delivery worker of one replica."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: AlertStore,
        channels: AlertChannels,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        poll_seconds: float = 1.0,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._pool = pool
        self._store = store
        self._channels = channels
        self._attempts = settings.gateway_webhook_attempts
        self._backoff = settings.gateway_webhook_backoff_seconds
        self._concurrency = settings.gateway_alert_delivery_concurrency
        self._metrics = metrics
        self._poll = poll_seconds
        self._lease = lease_seconds
        self._wakeup = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """A firing was recorded: look for due deliveries now, not at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Send due deliveries until cancelled; a store outage is retried at the next poll."""
        try:
            while True:
                try:
                    while await self._start_due():
                        pass
                except TRANSIENT as error:
                    self._metrics.alert_engine_errors.labels(stage="deliver").inc()
                    log.warning("alert deliveries not sent yet (retrying): %s", error)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):
                        await self._wakeup.wait()
                self._wakeup.clear()
        finally:
            for task in self._in_flight:
                task.cancel()  # their rows are sent again once the lease runs out

    async def _start_due(self) -> int:
        """Claim as many due rows as there are free slots and start attempting them."""
        free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return 0  # a finishing attempt wakes the loop
        claimed = await self._claim(min(free, BATCH))
        for row, alert in claimed:
            task = asyncio.create_task(self._attempt(row, alert))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wakeup.set()

    async def deliver_due(self) -> int:
        """Claim the due deliveries and attempt them, waiting for all; how many were attempted."""
        claimed = await self._claim(BATCH)
        await asyncio.gather(*(self._attempt(row, alert) for row, alert in claimed))
        return len(claimed)

    async def _claim(self, limit: int) -> list[tuple[asyncpg.Record, AlertOut | None]]:
        for row in await self._pool.fetch(_GIVE_UP, self._attempts):
            log.error(
                "alert %d firing %d not delivered after %d attempts (or its owner may no "
                "longer send)",
                row["alert_id"],
                row["id"],
                row["delivery_attempts"],
            )
            self._metrics.notifications.labels(channel="any", outcome="given_up").inc()
        claimed = await self._pool.fetch(_CLAIM, limit, self._lease, self._attempts)
        if not claimed:
            return []
        alerts = await self._store.by_ids(sorted({row["alert_id"] for row in claimed}))
        return [(row, alerts.get(row["alert_id"])) for row in claimed]

    async def _attempt(self, row: asyncpg.Record, alert: AlertOut | None) -> None:
        """One attempt and its bookkeeping; never raises (but for cancellation)."""
        try:
            outcome = await self._outcome(row, alert)
            await self._record(row, alert, outcome)
        except Exception:
            # The row keeps its lease and is tried again (or given up) once it runs out.
            self._metrics.alert_engine_errors.labels(stage="deliver").inc()
            log.exception("alert firing %d: attempt not recorded", row["id"])

    async def _outcome(self, row: asyncpg.Record, alert: AlertOut | None) -> Outcome:
        if alert is None:  # deleted (its events go with it) or a row that cannot be read
            return Outcome.REFUSED
        try:
            return await self._channels.attempt(alert, event_from_row(row))
        except Exception:
            # A bug or a row no check foresaw: this row's failed attempt, not the worker's end.
            self._metrics.notifications.labels(channel=alert.channel, outcome="error").inc()
            log.exception("alert %d firing %d: attempt raised", alert.id, row["id"])
            return Outcome.RETRY

    async def _record(self, row: asyncpg.Record, alert: AlertOut | None, outcome: Outcome) -> None:
        event_id: int = row["id"]
        attempts: int = row["delivery_attempts"]
        if outcome is Outcome.DELIVERED:
            await self._finish(event_id, "delivered")
        elif outcome is Outcome.REFUSED or attempts >= self._attempts:
            log.error(
                "alert %d firing %d not delivered by %s after %d attempts (%s)",
                row["alert_id"],
                event_id,
                alert.channel if alert is not None else "a deleted alert",
                attempts,
                outcome.value,
            )
            await self._finish(event_id, "failed")
        else:
            delay = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempts - 1))
            await self._pool.execute(
                "UPDATE alert_events SET next_attempt_at = now() + make_interval(secs => $2) "
                "WHERE id = $1",
                event_id,
                delay,
            )

    async def _finish(self, event_id: int, delivery: str) -> None:
        await self._pool.execute(
            "UPDATE alert_events SET delivery = $2, next_attempt_at = NULL WHERE id = $1",
            event_id,
            delivery,
        )
