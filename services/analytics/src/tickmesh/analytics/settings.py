"""Analytics service settings (TICKMESH_ANALYTICS_* plus the common ones)."""

from __future__ import annotations

from pydantic import Field, model_validator

from tickmesh.core.settings import CommonSettings
from tickmesh.core.sharding import Shard


class AnalyticsSettings(CommonSettings):
    """Where the analytics service listens, and how it consumes, batches and serves."""

    analytics_listen: str = "127.0.0.1:50053"
    analytics_metrics_port: int = Field(default=9103, ge=0, le=65535)
    # One shard consumes every bar shard; shard i of n (n = the bar shard count) consumes bar
    # shard i alone, so it computes and streams the instruments that bar shard owns.
    analytics_shard_index: int = Field(default=0, ge=0)
    analytics_shard_count: int = Field(default=1, ge=1, le=1024)
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

    @model_validator(mode="after")
    def _shard_pairs_with_a_bar_shard(self) -> AnalyticsSettings:
        count, bar_shards = self.analytics_shard_count, len(self.bar_shard_addresses)
        if self.analytics_shard_index >= count:
            raise ValueError(
                f"TICKMESH_ANALYTICS_SHARD_INDEX ({self.analytics_shard_index}) must be below "
                f"TICKMESH_ANALYTICS_SHARD_COUNT ({count})"
            )
        if count > 1 and count != bar_shards:
            raise ValueError(
                f"TICKMESH_ANALYTICS_SHARD_COUNT ({count}) must be 1 or equal the number of bar "
                f"shards ({bar_shards}): analytics shard i consumes bar shard i"
            )
        listed = len(self.analytics_shard_addresses)
        if self.analytics_addresses.strip() and listed != count:
            raise ValueError(
                f"TICKMESH_ANALYTICS_SHARD_COUNT ({count}) must equal the number of addresses "
                f"in TICKMESH_ANALYTICS_ADDRESSES ({listed})"
            )
        return self

    @property
    def shard(self) -> Shard:
        """The instruments this process computes and streams live (every one when unsharded)."""
        return Shard(self.analytics_shard_index, self.analytics_shard_count)

    @property
    def consumed_bar_shards(self) -> tuple[int, ...]:
        """The bar shards whose streams this process consumes: all of them, or its own one."""
        if self.analytics_shard_count == 1:
            return tuple(range(len(self.bar_shard_addresses)))
        return (self.analytics_shard_index,)

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
