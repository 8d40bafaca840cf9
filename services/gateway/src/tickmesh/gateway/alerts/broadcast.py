"""Alert firings reach a user's WebSocket on every gateway replica, not only the one that judged.

The replica that records a firing publishes it on one Redis channel; every replica (itself
included) subscribes and hands it to the connections of that user it holds. When Redis
cannot take the message the firing still goes to this replica's own connections (counted
and logged); it is recorded in `alert_events` either way, so the REST history has it.
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as redis
from pydantic import ValidationError

from tickmesh.core.cache import alert_firings_channel
from tickmesh.gateway.alerts.feed import AlertFeed
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.schemas import AlertEventOut

log = logging.getLogger(__name__)

RESUBSCRIBE_MAX_SECONDS = 5.0


class AlertBroadcast:
    """Publishes firings to every replica and feeds the ones published to this replica's feed."""

    def __init__(self, client: redis.Redis, feed: AlertFeed, metrics: GatewayMetrics) -> None:
        self._client = client
        self._feed = feed
        self._metrics = metrics

    async def publish(self, user_id: int, event: AlertEventOut) -> None:
        """Send a recorded firing to the user's connections on every replica."""
        message = json.dumps({"user_id": user_id, "event": event.model_dump(mode="json")})
        try:
            await self._client.publish(alert_firings_channel(), message)
        except (redis.RedisError, OSError) as error:
            self._metrics.alert_broadcast_failures.inc()
            log.warning("alert firing not broadcast (delivered on this replica only): %s", error)
            self._feed.publish(user_id, event)

    async def run(self) -> None:
        """Deliver broadcast firings to this replica's connections until cancelled."""
        delay = 0.2
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(alert_firings_channel())
                    delay = 0.2
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(message["data"])
            except (redis.RedisError, OSError) as error:
                self._metrics.alert_broadcast_failures.inc()
                log.warning("alert broadcast subscription lost (%s); again in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_MAX_SECONDS)

    def _deliver(self, data: bytes | str) -> None:
        try:
            decoded = json.loads(data)
            event = AlertEventOut.model_validate(decoded["event"])
            user_id = int(decoded["user_id"])
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            self._metrics.alert_broadcast_failures.inc()
            log.warning("malformed alert broadcast ignored: %s", error)
            return
        self._feed.publish(user_id, event)
