"""Tunables of the bar engine: allowed lateness, retention of final bars, dedup bounds, flat fill."""

from __future__ import annotations

from dataclasses import dataclass, field

from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v2 import market_pb2

NS_PER_HOUR = 60 * NS_PER_MINUTE

# Exchanges that print zero-volume placeholder bars for quiet minutes (Binance does; Yahoo's
# stock bars do not exist outside trading hours, so filling nights and weekends would invent data).
DEFAULT_FLAT_FILL_EXCHANGES: frozenset[int] = frozenset(
    {
        market_pb2.EXCHANGE_BINANCE_SPOT,
        market_pb2.EXCHANGE_BINANCE_USDM,
        market_pb2.EXCHANGE_SIMULATOR,
    }
)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Settings of one bar engine; every time is in nanoseconds."""

    allowed_lateness_ns: int = 2 * NS_PER_SECOND
    retention_ns: int = 26 * NS_PER_HOUR
    max_id_intervals: int = 4096
    max_future_ns: int = 60 * NS_PER_SECOND
    # Events seen further behind the wall clock than this come from the past (a replay or a long
    # backfill): such a symbol's clock follows its own events, not today's date.
    replay_lag_ns: int = 10 * NS_PER_MINUTE
    flat_fill_exchanges: frozenset[int] = field(default=DEFAULT_FLAT_FILL_EXCHANGES)

    def __post_init__(self) -> None:
        if self.allowed_lateness_ns < 0:
            raise ValueError("allowed_lateness_ns must not be negative")
        if self.retention_ns < NS_PER_MINUTE + self.allowed_lateness_ns:
            raise ValueError(
                "retention_ns must cover at least one minute plus the allowed lateness"
            )
        if self.max_id_intervals < 2:
            raise ValueError("max_id_intervals must be at least 2")
        if self.max_future_ns < 0:
            raise ValueError("max_future_ns must not be negative")
