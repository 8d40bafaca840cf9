"""Analytics service settings (TICKMESH_ANALYTICS_* plus the common ones)."""

from __future__ import annotations

from pydantic import Field

from tickmesh.core.settings import CommonSettings


class AnalyticsSettings(CommonSettings):
    """Where the analytics service listens, and how it consumes, batches and serves."""

    analytics_listen: str = "127.0.0.1:50053"
    analytics_metrics_port: int = Field(default=9103, ge=0, le=65535)
    # Names the resume points in analytics_consumer_state (one per bar shard, see
    # resume_point_names); replicas share them.
    analytics_consumer_name: str = Field(default="analytics", min_length=1, max_length=100)
    analytics_commit_interval_ms: int = Field(default=100, ge=1, le=10_000)
    analytics_commit_max_bars: int = Field(default=2_000, ge=1, le=100_000)
    # Bars asked of BarService.GetBars to warm an instrument and timeframe met after a restart.
    analytics_warmup_bars: int = Field(default=320, ge=200, le=5_000)
    analytics_reconnect_max_seconds: float = Field(default=5.0, gt=0, le=300)
    analytics_subscriber_backlog: int = Field(default=10_000, ge=10, le=1_000_000)
    # TICKMESH_HISTORY_RETENTION_DAYS (the bar service reads the same): days of revision
    # history kept for as_of reads and Replay; 0 keeps it forever.
    history_retention_days: int = Field(default=0, ge=0, le=36_500)
    analytics_retention_interval_seconds: float = Field(default=3600.0, gt=0, le=86_400)

    @property
    def resume_point_names(self) -> tuple[str, ...]:
        """The resume point of each bar shard's stream, in shard order.

        Change ids order one shard's bars only (shards commit independently, even into one
        database), so each shard's stream resumes from its own point. One shard keeps the
        plain consumer name, so an unsharded deployment resumes where it always did.
        """
        count = len(self.bar_shard_addresses)
        if count == 1:
            return (self.analytics_consumer_name,)
        return tuple(f"{self.analytics_consumer_name}:bars-{i}-of-{count}" for i in range(count))
