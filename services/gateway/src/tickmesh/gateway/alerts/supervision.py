"""Keeping the alert workers alive: a worker that raises or returns is logged, counted, restarted.

A background task that dies silently stops alerts for every user while the HTTP side looks
healthy; restarting it (with a growing pause, so a failure that repeats does not spin) keeps
one bad input or one bug from turning into a silent outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tickmesh.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# A worker that ran this long before dying is restarted after the first pause again.
_HEALTHY_RUN_SECONDS = 60.0


async def supervise(
    name: str,
    work: Callable[[], Awaitable[None]],
    metrics: GatewayMetrics,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
) -> None:
    """Run `work()` until cancelled, restarting it whenever it raises or returns."""
    delay = first_delay
    while True:
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            await work()
        except Exception as error:
            failure = error
        if time.monotonic() - started > _HEALTHY_RUN_SECONDS:
            delay = first_delay  # a fresh failure after a long healthy run
        metrics.alert_worker_deaths.labels(worker=name).inc()
        if failure is None:
            log.error("alert worker %s ended unexpectedly; restarting in %.1f s", name, delay)
        else:
            log.error("alert worker %s died; restarting in %.1f s", name, delay, exc_info=failure)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
