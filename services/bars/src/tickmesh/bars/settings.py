"""Bar service settings (TICKMESH_BARS_* plus the common ones)."""

from __future__ import annotations

from pydantic import Field, model_validator

from tickmesh.core.settings import CommonSettings


class BarsSettings(CommonSettings):
    """Where the bar service listens, which shard it owns and how it batches its work."""

    bars_listen: str = "127.0.0.1:50052"
    bars_metrics_port: int = Field(default=9102, ge=0, le=65535)
    bars_shard_index: int = Field(default=0, ge=0)
    bars_shard_count: int = Field(default=1, ge=1, le=1024)
    bars_allowed_lateness_ms: int = Field(default=2000, ge=0, le=600_000)
    bars_commit_interval_ms: int = Field(default=100, ge=5, le=250)
    bars_forming_interval_ms: int = Field(default=250, ge=50, le=10_000)
    bars_cache_size: int = Field(default=5000, ge=10, le=100_000)
    bars_subscriber_backlog: int = Field(default=20_000, ge=100, le=1_000_000)
    # Days of superseded bar versions kept for point-in-time reads and replays; 0 keeps all.
    history_retention_days: int = Field(default=0, ge=0, le=36_500)

    @model_validator(mode="after")
    def _shard_in_range(self) -> BarsSettings:
        if self.bars_shard_index >= self.bars_shard_count:
            raise ValueError(
                f"TICKMESH_BARS_SHARD_INDEX ({self.bars_shard_index}) must be below "
                f"TICKMESH_BARS_SHARD_COUNT ({self.bars_shard_count})"
            )
        return self

    @model_validator(mode="after")
    def _shard_count_matches_the_address_list(self) -> BarsSettings:
        # Where the list is given (Helm gives it to every pod), a shard that counts differently
        # would own symbols the collectors and gateways route elsewhere.
        listed = len(self.bar_shard_addresses)
        if self.bars_addresses.strip() and listed != self.bars_shard_count:
            raise ValueError(
                f"TICKMESH_BARS_SHARD_COUNT ({self.bars_shard_count}) must equal the number of "
                f"addresses in TICKMESH_BARS_ADDRESSES ({listed})"
            )
        return self
