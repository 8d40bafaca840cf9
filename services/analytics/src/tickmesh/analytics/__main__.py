"""`python -m tickmesh.analytics`: the analytics service process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence

from tickmesh.analytics.analytics_cache import AnalyticsCache
from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.analytics_service import AnalyticsServicer
from tickmesh.analytics.consumer import BarConsumer, ConsumerConfig
from tickmesh.analytics.engine import AnalyticsEngine
from tickmesh.analytics.group_commit import GroupCommitter
from tickmesh.analytics.hub import AnalyticsHub
from tickmesh.analytics.settings import AnalyticsSettings
from tickmesh.analytics.store import AnalyticsStore
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.runtime import ServiceContext, main_for
from tickmesh.core.settings import load_settings_or_exit
from tickmesh.v1 import analytics_service_pb2_grpc

log = logging.getLogger(__name__)

# Bounds the final commit at shutdown, so a database that is gone cannot hang the drain.
_FINAL_FLUSH_SECONDS = 10.0


async def wire(context: ServiceContext) -> Sequence[ServiceRegistration]:
    """Build the analytics service: its consumer of bars (started here) and its servicer."""
    settings = context.settings
    if not isinstance(settings, AnalyticsSettings):
        settings = AnalyticsSettings()
    metrics = AnalyticsMetrics(context.metrics.registry)
    store = AnalyticsStore(context.pool, context.metrics, settings.analytics_consumer_name)
    hub = AnalyticsHub(settings.analytics_subscriber_backlog)
    committer = GroupCommitter(
        store,
        AnalyticsCache(context.redis),
        hub,
        metrics,
        settings.analytics_commit_interval_ms / 1000,
        settings.analytics_commit_max_bars,
    )
    committer.start_from(await store.load_resume_point())
    channel = open_channel(settings.bars_address)
    consumer = BarConsumer(
        channel,
        AnalyticsEngine(capacity=settings.analytics_warmup_bars),
        committer,
        metrics,
        ConsumerConfig(settings.analytics_warmup_bars, settings.analytics_reconnect_max_seconds),
    )
    tasks = [
        asyncio.create_task(consumer.run(), name="bar-consumer"),
        asyncio.create_task(committer.run(), name="group-committer"),
    ]
    for task in tasks:
        task.add_done_callback(_stop_process_if_failed)

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(committer.flush(), _FINAL_FLUSH_SECONDS)
        except TimeoutError:
            log.error("final analytics commit timed out; the restart resumes from the stored point")
        await channel.close()

    context.exit_stack.push_async_callback(stop)
    servicer = AnalyticsServicer(store, hub, metrics)
    return [
        ServiceRegistration(
            "tickmesh.v1.AnalyticsService",
            analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server,
            servicer,
        )
    ]


def _stop_process_if_failed(task: asyncio.Task[None]) -> None:
    """A consumer that died of a bug must not leave a server that serves ever-older data."""
    if task.cancelled():
        return
    error = task.exception()
    if error is None:
        return
    log.error("%s failed; stopping the process", task.get_name(), exc_info=error)
    # SIGTERM drains like an operator's stop; the supervisor then restarts the process.
    with contextlib.suppress(ProcessLookupError):
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    """Run the analytics service until SIGTERM."""
    settings = load_settings_or_exit(AnalyticsSettings)
    main_for(
        "analytics", settings, settings.analytics_listen, settings.analytics_metrics_port, wire
    )


if __name__ == "__main__":
    main()
