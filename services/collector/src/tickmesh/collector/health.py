"""Source health in Redis: one JSON field per source in the `system:health` hash."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis.asyncio as redis

from tickmesh.core.cache import SYSTEM_HEALTH_KEY

log = logging.getLogger(__name__)

HealthProbe = Callable[[], dict[str, Any]]


class HealthReporter:
    """Writes each source's health every `interval_s` (field `collector:<source>`)."""

    def __init__(
        self, client: redis.Redis, probes: Mapping[str, HealthProbe], interval_s: float = 5.0
    ) -> None:
        self._client = client
        self._probes = probes
        self._interval_s = interval_s

    async def report(self) -> dict[str, str]:
        """Write every probe's state once; return the fields written."""
        now = time.time()
        fields = {
            f"collector:{name}": json.dumps({**probe(), "updated_at": now}, sort_keys=True)
            for name, probe in self._probes.items()
        }
        if fields:
            # redis-py types its mapping keys as an invariant union; plain str is what it sends.
            await self._client.hset(SYSTEM_HEALTH_KEY, mapping=cast(Any, fields))
        return fields

    async def run(self) -> None:
        """Report until cancelled; a Redis failure is logged and retried next interval."""
        while True:
            try:
                await self.report()
            except (redis.RedisError, OSError) as error:
                log.warning("cannot write source health to redis: %s", error)
            await asyncio.sleep(self._interval_s)
