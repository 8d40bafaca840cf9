"""`python -m tickmesh.bars`: the bar service process."""

from __future__ import annotations

from collections.abc import Sequence

from tickmesh.bars.bar_cache import BarCache
from tickmesh.bars.bar_metrics import BarMetrics
from tickmesh.bars.bar_service import BarServicer
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.history_retention import HistoryRetention
from tickmesh.bars.ingest_pipeline import IngestPipeline
from tickmesh.bars.ingest_service import IngestServicer
from tickmesh.bars.settings import BarsSettings
from tickmesh.bars.store import BarStore
from tickmesh.bars.subscriptions import BarHub
from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.long_lived import LongLivedFreezer
from tickmesh.core.replay import raw_response_methods
from tickmesh.core.runtime import ServiceContext, main_for
from tickmesh.core.settings import load_settings_or_exit
from tickmesh.core.sharding import Shard
from tickmesh.v2 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
)


def build(
    context: ServiceContext, settings: BarsSettings
) -> tuple[IngestPipeline, list[ServiceRegistration]]:
    """Wire the bar service's parts from its settings and opened dependencies."""
    metrics = BarMetrics(context.metrics)
    shard = Shard(settings.bars_shard_index, settings.bars_shard_count)
    store = BarStore(context.pool, context.metrics, shard)
    cache = BarCache(context.redis, context.metrics, settings.bars_cache_size)
    hub = BarHub(settings.bars_subscriber_backlog)
    engine = BarEngine(
        EngineConfig(allowed_lateness_ns=settings.bars_allowed_lateness_ms * 1_000_000)
    )
    pipeline = IngestPipeline(
        engine,
        store,
        cache,
        hub,
        metrics,
        shard,
        commit_interval_seconds=settings.bars_commit_interval_ms / 1000,
        forming_interval_seconds=settings.bars_forming_interval_ms / 1000,
    )
    registrations = [
        ServiceRegistration(
            ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
            ingest_service_pb2_grpc.add_IngestServiceServicer_to_server,
            IngestServicer(pipeline, metrics),
        ),
        ServiceRegistration(
            bar_service_pb2.DESCRIPTOR.services_by_name["BarService"].full_name,
            # Replay yields pre-encoded responses, sent as they are.
            raw_response_methods(bar_service_pb2_grpc.add_BarServiceServicer_to_server, "Replay"),
            BarServicer(store, cache, hub, metrics, shard),
        ),
    ]
    return pipeline, registrations


def main() -> None:
    """Run the bar service until SIGTERM."""
    settings = load_settings_or_exit(BarsSettings)

    async def wire(context: ServiceContext) -> Sequence[ServiceRegistration]:
        pipeline, registrations = build(context, settings)
        await pipeline.start()
        context.exit_stack.push_async_callback(pipeline.stop)
        # The retained final bars are millions of objects for the whole market: keep them out
        # of the full collections that would stop every stream to scan them (long_lived.py).
        freezer = LongLivedFreezer(context.metrics.registry)
        freezer.start()
        context.exit_stack.push_async_callback(freezer.stop)
        if settings.bars_shard_index == 0:  # one shard collapses the shared table
            retention = HistoryRetention(context.pool, settings.history_retention_days)
            retention.start()
            context.exit_stack.push_async_callback(retention.stop)
        return registrations

    main_for("bars", settings, settings.bars_listen, settings.bars_metrics_port, wire)


if __name__ == "__main__":
    main()
