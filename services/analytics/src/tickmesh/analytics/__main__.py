"""`python -m tickmesh.analytics`: the analytics service process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from grpc import aio

from tickmesh.analytics.analytics_cache import AnalyticsCache
from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.analytics_service import AnalyticsServicer, analytics_registration
from tickmesh.analytics.consumer import BarConsumer, ConsumerConfig
from tickmesh.analytics.engine import AnalyticsEngine
from tickmesh.analytics.group_commit import GroupCommitter
from tickmesh.analytics.hub import AnalyticsHub
from tickmesh.analytics.retention import HistoryRetention
from tickmesh.analytics.settings import AnalyticsSettings
from tickmesh.analytics.store import AnalyticsStore
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.long_lived import LongLivedFreezer
from tickmesh.core.runtime import ServiceContext, main_for
from tickmesh.core.settings import load_settings_or_exit

log = logging.getLogger(__name__)

# Bounds the final commit at shutdown, so a database that is gone cannot hang the drain.
_FINAL_FLUSH_SECONDS = 10.0


@dataclass
class ShardStream:
    """One bar shard's stream: its channel, consumer and committer (with its own resume point)."""

    channel: aio.Channel
    consumer: BarConsumer
    committer: GroupCommitter


async def open_shard_stream(
    context: ServiceContext,
    settings: AnalyticsSettings,
    parts: tuple[AnalyticsMetrics, AnalyticsCache, AnalyticsHub],
    index: int,
) -> ShardStream:
    """Build bar shard `index`'s consumer, resuming from that shard's stored point."""
    metrics, cache, hub = parts
    store = AnalyticsStore(context.pool, context.metrics, settings.resume_point_names[index])
    committer = GroupCommitter(
        store,
        cache,
        hub,
        metrics,
        settings.analytics_commit_interval_ms / 1000,
        settings.analytics_commit_max_bars,
        bars_shard=index,
    )
    committer.start_from(await store.load_resume_point())
    # The shard that streams an instrument's bars also answers its GetBars warm-ups.
    channel = open_channel(settings.bar_shard_addresses[index], tls=context.tls)
    consumer = BarConsumer(
        channel,
        # Shards own disjoint instruments, so each stream keeps its own engine.
        AnalyticsEngine(capacity=settings.analytics_warmup_bars),
        committer,
        metrics,
        ConsumerConfig(settings.analytics_warmup_bars, settings.analytics_reconnect_max_seconds),
    )
    return ShardStream(channel, consumer, committer)


async def wire(context: ServiceContext) -> Sequence[ServiceRegistration]:
    """Build the analytics service: a consumer of every bar shard (started here) and its servicer."""
    settings = context.settings
    if not isinstance(settings, AnalyticsSettings):
        settings = AnalyticsSettings()
    metrics = AnalyticsMetrics(context.metrics.registry)
    hub = AnalyticsHub(settings.analytics_subscriber_backlog)
    parts = (metrics, AnalyticsCache(context.redis), hub)
    streams = [
        await open_shard_stream(context, settings, parts, index)
        for index in settings.consumed_bar_shards
    ]
    tasks = []
    for index, stream in zip(settings.consumed_bar_shards, streams, strict=True):
        tasks += [
            asyncio.create_task(stream.consumer.run(), name=f"bar-consumer-{index}"),
            asyncio.create_task(stream.committer.run(), name=f"group-committer-{index}"),
        ]
    for task in tasks:
        task.add_done_callback(_stop_process_if_failed)
    retention = HistoryRetention(
        context.pool,
        metrics,
        settings.history_retention_days,
        settings.analytics_retention_interval_seconds,
    )
    tasks.append(asyncio.create_task(retention.run(), name="history-retention"))
    # A warm stream holds ~180 tracked objects: a whole market's 12,000 streams are 2 M, and
    # every full collection would scan them with the loop stopped (long_lived.py).
    freezer = LongLivedFreezer(context.metrics.registry)
    freezer.start()

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        flushes = asyncio.gather(*(stream.committer.flush() for stream in streams))
        try:
            await asyncio.wait_for(flushes, _FINAL_FLUSH_SECONDS)
        except TimeoutError:
            log.error("final analytics commit timed out; the restart resumes from the stored point")
        for stream in streams:
            await stream.channel.close()

    context.exit_stack.push_async_callback(stop)
    context.exit_stack.push_async_callback(freezer.stop)
    # Reads do not use the resume point: any store on the pool serves them.
    reader = AnalyticsStore(context.pool, context.metrics, settings.analytics_consumer_name)
    servicer = AnalyticsServicer(reader, hub, metrics, shard=settings.shard)
    return [analytics_registration(servicer)]


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
