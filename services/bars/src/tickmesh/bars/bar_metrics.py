"""The bar service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from tickmesh.core.metrics import CoreMetrics


class BarMetrics:
    """Trades, batches, acks, bars and subscribers of one bar service process."""

    def __init__(self, core: CoreMetrics) -> None:
        registry = core.registry
        self.core = core
        self.trades = Counter(
            "tickmesh_bars_trades",
            "Trades received, by outcome (accepted, duplicate, non_market, too_late, quarantined).",
            ["outcome"],
            registry=registry,
        )
        self.batches = Counter(
            "tickmesh_bars_ingest_batches",
            "Ingest batches, by outcome (applied, duplicate, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.acks = Counter(
            "tickmesh_bars_ingest_acks", "Acknowledgements sent to collectors.", registry=registry
        )
        self.bars = Counter(
            "tickmesh_bars_built",
            "Bars persisted, by kind (final or revised) and timeframe.",
            ["kind", "timeframe"],
            registry=registry,
        )
        self.commit_failures = Counter(
            "tickmesh_bars_commit_failures",
            "Group commits that failed and were retried.",
            registry=registry,
        )
        self.unacked_streams = Gauge(
            "tickmesh_bars_unacked_streams",
            "Ingest streams with applied but not yet durable batches.",
            registry=registry,
        )
        self.subscribers = Gauge(
            "tickmesh_bars_subscribers", "Open BarService.Subscribe streams.", registry=registry
        )
        self.replay_pages = Counter(
            "tickmesh_bars_replay_pages",
            "Pages of bar_versions read by BarService.Replay (it stalls with a stalled reader).",
            registry=registry,
        )
