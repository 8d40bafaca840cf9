"""Sending webhook and e-mail firings from `alert_events`, with retries, on whichever replica.

The engine only records a firing (delivery 'pending') and wakes this worker. A replica
claims due deliveries under row locks (SKIP LOCKED, so replicas never send one twice at
once) and pushes their next attempt a lease ahead before sending: if it dies mid-send,
another replica (or itself, restarted) sends once the lease runs out. Delivery is therefore
at least once; a firing is never lost with the replica that judged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from tickmesh.gateway.alerts.channels import AlertChannels, Outcome
from tickmesh.gateway.alerts.engine import TRANSIENT
from tickmesh.gateway.alerts.store import EVENT_COLUMNS, AlertStore, event_from_row
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.schemas import AlertOut
from tickmesh.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

BATCH = 20
LEASE_SECONDS = 60.0  # longer than any one send (webhook 5 s, SMTP 10 s timeouts)
MAX_BACKOFF_SECONDS = 300.0

_CLAIM = f"""
UPDATE alert_events
SET delivery_attempts = delivery_attempts + 1,
    next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM alert_events
    WHERE delivery = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING {EVENT_COLUMNS}, delivery_attempts
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
        self._metrics = metrics
        self._poll = poll_seconds
        self._lease = lease_seconds
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """A firing was recorded: look for due deliveries now, not at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Send due deliveries until cancelled; a store outage is retried at the next poll."""
        while True:
            try:
                while await self.deliver_due():
                    pass
            except TRANSIENT as error:
                self._metrics.alert_engine_errors.labels(stage="deliver").inc()
                log.warning("alert deliveries not sent yet (retrying): %s", error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wakeup.wait()
            self._wakeup.clear()

    async def deliver_due(self) -> int:
        """Claim and attempt the deliveries that are due; how many were attempted."""
        claimed = await self._pool.fetch(_CLAIM, BATCH, self._lease)
        if not claimed:
            return 0
        alerts = await self._store.by_ids(sorted({row["alert_id"] for row in claimed}))
        await asyncio.gather(*(self._attempt(row, alerts.get(row["alert_id"])) for row in claimed))
        return len(claimed)

    async def _attempt(self, row: asyncpg.Record, alert: AlertOut | None) -> None:
        event = event_from_row(row)
        if alert is None:  # the alert was deleted; its events go with it (ON DELETE CASCADE)
            return
        outcome = await self._channels.attempt(alert, event)
        attempts: int = row["delivery_attempts"]
        if outcome is Outcome.DELIVERED:
            await self._finish(event.id, "delivered")
        elif outcome is Outcome.REFUSED or attempts >= self._attempts:
            log.error(
                "alert %d firing %d not delivered by %s after %d attempts (%s)",
                alert.id,
                event.id,
                alert.channel,
                attempts,
                outcome.value,
            )
            await self._finish(event.id, "failed")
        else:
            delay = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempts - 1))
            await self._pool.execute(
                "UPDATE alert_events SET next_attempt_at = now() + make_interval(secs => $2) "
                "WHERE id = $1",
                event.id,
                delay,
            )

    async def _finish(self, event_id: int, delivery: str) -> None:
        await self._pool.execute(
            "UPDATE alert_events SET delivery = $2, next_attempt_at = NULL WHERE id = $1",
            event_id,
            delivery,
        )
