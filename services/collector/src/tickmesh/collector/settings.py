"""Collector settings (TICKMESH_COLLECTOR_* plus the common ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tickmesh.core.instruments import InstrumentError, InstrumentId, check_symbol
from tickmesh.core.settings import CommonSettings

# What a first run collects when the registry is empty, so a new user sees the market.
DEFAULT_WATCHLIST = (
    "binance_spot:BTCUSDT,binance_spot:ETHUSDT,binance_usdm:BTCUSDT,binance_usdm:ETHUSDT,"
    "yahoo:SPY,yahoo:AAPL"
)


class CollectorSettings(CommonSettings):
    """Where the collector listens, which shard it collects, its sources and ingest bounds."""

    collector_listen: str = "127.0.0.1:50051"
    collector_metrics_port: int = Field(default=9101, ge=0, le=65535)
    collector_shard_index: int = Field(default=0, ge=0)
    collector_shard_count: int = Field(default=1, ge=1, le=1024)
    # Ingest stream id; empty derives "collector-<index>-of-<count>" (one collector per shard).
    collector_stream_id: str = Field(default="", max_length=100)
    collector_batch_trades: int = Field(default=1000, ge=1, le=10_000)
    collector_batch_delay_ms: int = Field(default=50, ge=1, le=5000)
    collector_buffer_trades: int = Field(default=1_000_000, ge=1000, le=100_000_000)
    collector_in_flight_batches: int = Field(default=256, ge=1, le=100_000)
    collector_registry_poll_seconds: float = Field(default=3.0, gt=0, le=3600)
    collector_health_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    collector_breaker_threshold: int = Field(default=5, ge=1, le=1000)
    collector_breaker_ttl_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Binance: base URLs (the demo points them at the simulator), stream kind and limits.
    collector_binance_spot_stream_url: str = "wss://stream.binance.com:9443"
    collector_binance_spot_api_url: str = "https://api.binance.com/api"
    collector_binance_usdm_stream_url: str = "wss://fstream.binance.com"
    collector_binance_usdm_api_url: str = "https://fapi.binance.com/fapi"
    collector_binance_stream_kind: Literal["trade", "aggTrade"] = "trade"
    collector_binance_max_streams: int = Field(default=1024, ge=1, le=1024)
    collector_binance_max_age_seconds: float = Field(default=23.5 * 3600, gt=0, le=24 * 3600)
    collector_binance_ping_interval_seconds: float = Field(default=20.0, gt=0, le=600)
    collector_binance_silence_seconds: float = Field(default=120.0, gt=0, le=3600)
    collector_binance_spot_weight_per_minute: int = Field(default=6000, ge=1)
    collector_binance_usdm_weight_per_minute: int = Field(default=2400, ge=1)
    collector_backfill_grace_ms: int = Field(default=500, ge=0, le=600_000)
    # Yahoo Finance: extra tickers besides the registry's yahoo symbols, poll period, budget.
    collector_yahoo_tickers: str = ""
    collector_yahoo_poll_seconds: float = Field(default=30.0, gt=0, le=3600)
    collector_yahoo_requests_per_minute: float = Field(default=30.0, gt=0, le=6000)
    # Send Yahoo's requests to this server instead (the demo's and the tests' local Yahoo).
    collector_yahoo_base_url: str = ""
    # Instruments registered when the collector starts on an empty registry, as
    # "<venue>:<symbol>" texts separated by commas; an empty string registers none.
    collector_default_watchlist: str = DEFAULT_WATCHLIST
    # How often to ask exchangeInfo again for instruments whose tick/step size is unknown.
    collector_exchange_info_retry_seconds: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("collector_yahoo_tickers")
    @classmethod
    def _tickers_well_formed(cls, value: str) -> str:
        for ticker in value.split(","):
            if ticker.strip():
                try:
                    check_symbol(ticker.strip().upper())
                except InstrumentError as error:
                    raise ValueError(str(error)) from None
        return value

    @field_validator("collector_default_watchlist")
    @classmethod
    def _watchlist_well_formed(cls, value: str) -> str:
        for text in value.split(","):
            if text.strip():
                try:
                    InstrumentId.parse(text.strip())
                except InstrumentError as error:
                    raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _shard_in_range(self) -> CollectorSettings:
        if self.collector_shard_index >= self.collector_shard_count:
            raise ValueError(
                f"TICKMESH_COLLECTOR_SHARD_INDEX ({self.collector_shard_index}) must be below "
                f"TICKMESH_COLLECTOR_SHARD_COUNT ({self.collector_shard_count})"
            )
        return self

    @model_validator(mode="after")
    def _one_collector_shard_per_bar_shard(self) -> CollectorSettings:
        # Collector shard i collects the instruments with shard_of(instrument, n) == i (crc32 of
        # "<venue>:<symbol>"), exactly what bar shard i of n owns,
        # so one acknowledged ingest stream carries all it collects. Other counts would need a
        # stream to every bar shard from every collector; refuse them rather than half-route.
        bar_shards = len(self.bar_shard_addresses)
        if bar_shards != self.collector_shard_count:
            raise ValueError(
                f"TICKMESH_COLLECTOR_SHARD_COUNT ({self.collector_shard_count}) must equal the "
                f"number of bar shards ({bar_shards}, from TICKMESH_BARS_ADDRESSES or "
                "TICKMESH_BARS_ADDRESS): collector shard i sends its instruments to bar shard i"
            )
        return self

    @property
    def ingest_address(self) -> str:
        """The bar shard this collector shard publishes to: the one owning the same symbols."""
        return self.bar_shard_addresses[self.collector_shard_index]

    @property
    def stream_id(self) -> str:
        """The ingest stream id: configured, or derived from the shard."""
        derived = f"collector-{self.collector_shard_index}-of-{self.collector_shard_count}"
        return self.collector_stream_id or derived

    @property
    def default_watchlist(self) -> list[InstrumentId]:
        """The instruments to register on an empty registry, in the order given."""
        parts = [text.strip() for text in self.collector_default_watchlist.split(",")]
        return [InstrumentId.parse(text) for text in parts if text]

    @property
    def yahoo_tickers(self) -> list[str]:
        """The configured Yahoo tickers, upper-cased."""
        return [t.strip().upper() for t in self.collector_yahoo_tickers.split(",") if t.strip()]
