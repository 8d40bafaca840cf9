"""Prometheus metrics of the analytics service, on the process's core registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tickmesh.analytics.results import Quality
from tickmesh.core.metrics import LATENCY_BUCKETS
from tickmesh.core.timeframes import from_proto

_BAR_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class AnalyticsMetrics:
    """Bars consumed and rejected, compute time, warm-ups, reconnects, commits, subscribers, quality."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.bars_consumed = Counter(
            "tickmesh_analytics_bars_consumed",
            "Final bars and revisions consumed from BarService.Subscribe.",
            registry=registry,
        )
        self.bars_rejected = Counter(
            "tickmesh_analytics_bars_rejected",
            "Bars unfit for indicators (unreadable values, NaN/inf, high < low, negative volume, "
            "no valid instrument), flagged by quality when the instrument is known.",
            registry=registry,
        )
        self.bar_seconds = Histogram(
            "tickmesh_analytics_bar_seconds",
            "Indicators + features + quality time of one final bar.",
            buckets=_BAR_BUCKETS,
            registry=registry,
        )
        self.warmups = Counter(
            "tickmesh_analytics_warmups",
            "Instrument and timeframe streams warmed from BarService.GetBars, by reason.",
            ["reason"],
            registry=registry,
        )
        self.stream_reconnects = Counter(
            "tickmesh_analytics_stream_reconnects",
            "Reconnects of the BarService.Subscribe stream, by status code.",
            ["code"],
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "tickmesh_analytics_commit_seconds",
            "Time of one group commit (rows, resume point, cache, publish).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_failures = Counter(
            "tickmesh_analytics_commit_failures",
            "Group commits that failed and were retried.",
            registry=registry,
        )
        self.cache_failures = Counter(
            "tickmesh_analytics_cache_failures",
            "Redis updates that failed after a commit (the database stays the truth).",
            registry=registry,
        )
        self.replays = Counter(
            "tickmesh_analytics_replays",
            "AnalyticsService.Replay calls started.",
            registry=registry,
        )
        self.replay_pages = Counter(
            "tickmesh_analytics_replay_pages",
            "Pages of the update log read by replays (each read after the last page was sent).",
            registry=registry,
        )
        self.history_rows_deleted = Counter(
            "tickmesh_analytics_history_rows_deleted",
            "History rows (versions, logged updates) deleted by retention, per table.",
            ["table"],
            registry=registry,
        )
        self.resume_change_id = Gauge(
            "tickmesh_analytics_resume_change_id",
            "The change id of the last bar whose analytics are stored, per bar shard's stream.",
            ["bars_shard"],
            registry=registry,
        )
        self.subscribers = Gauge(
            "tickmesh_analytics_subscribers",
            "Open AnalyticsService.Subscribe streams.",
            registry=registry,
        )
        self.quality_score = Gauge(
            "tickmesh_analytics_quality_score",
            "Data-quality score (0-1) of the newest assessment, by instrument and timeframe.",
            ["exchange", "symbol", "timeframe"],
            registry=registry,
        )
        self.quality_checks_failed = Counter(
            "tickmesh_analytics_quality_checks_failed",
            "Quality assessments that failed a check, by check name.",
            ["check"],
            registry=registry,
        )
        self.bar_received = Gauge(
            "tickmesh_analytics_bar_received_timestamp_seconds",
            "Wall-clock time the newest final bar was received, by instrument and timeframe "
            "(time() minus it says how long a stream has been quiet).",
            ["exchange", "symbol", "timeframe"],
            registry=registry,
        )

    def observe_quality(self, quality: Quality) -> None:
        """Export one assessment: its score, its failed checks and when its bar was received."""
        instrument = quality.instrument
        labels = (instrument.venue, instrument.symbol, from_proto(quality.timeframe).label)
        self.quality_score.labels(*labels).set(quality.score)
        for check in quality.checks_failed:
            self.quality_checks_failed.labels(check).inc()
        if quality.received_ns is not None:
            self.bar_received.labels(*labels).set(quality.received_ns / 1e9)
