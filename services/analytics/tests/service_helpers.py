"""Builders shared by the analytics service tests: proto bars, and the service's parts on real storage."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import numpy as np
import redis.asyncio as redis

from tickmesh.analytics.analytics_cache import AnalyticsCache
from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.engine import AnalyticsEngine
from tickmesh.analytics.group_commit import GroupCommitter
from tickmesh.analytics.hub import AnalyticsHub
from tickmesh.analytics.store import AnalyticsStore
from tickmesh.core.metrics import CoreMetrics
from tickmesh.v1 import market_pb2

NS_PER_MINUTE = 60_000_000_000
START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01 00:00 UTC


def unique_symbol(prefix: str = "T") -> str:
    """A symbol no other test uses (the database lives for the whole run)."""
    return f"{prefix}{secrets.token_hex(4).upper()}"


def walk_bars(symbol: str, count: int, seed: int, first_change_id: int = 1) -> list[market_pb2.Bar]:
    """`count` final 1m proto bars of a random walk, with growing change ids."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, count)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    volume = rng.uniform(1.0, 100.0, count)
    return [
        market_pb2.Bar(
            symbol=symbol,
            exchange=market_pb2.EXCHANGE_SIMULATOR,
            timeframe=market_pb2.TIMEFRAME_1M,
            open_time_ns=START_NS + i * NS_PER_MINUTE,
            open=float(open_[i]),
            high=float(high[i]),
            low=float(low[i]),
            close=float(close[i]),
            volume=float(volume[i]),
            quote_volume=float(volume[i] * close[i]),
            trade_count=int(volume[i]) + 1,
            vwap=float(close[i]),
            final=True,
            change_id=first_change_id + i,
        )
        for i in range(count)
    ]


def replace_bar(bar: market_pb2.Bar, **changes: float) -> market_pb2.Bar:
    """A copy of a proto bar with some fields changed."""
    copy = market_pb2.Bar()
    copy.CopyFrom(bar)
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


@dataclass
class ServiceParts:
    """The analytics service's parts as __main__ wires them, minus the gRPC consumer."""

    engine: AnalyticsEngine
    store: AnalyticsStore
    hub: AnalyticsHub
    committer: GroupCommitter
    metrics: AnalyticsMetrics

    async def feed(self, bars: list[market_pb2.Bar]) -> None:
        """Process bars as the consumer does (fresh streams start empty), then commit them."""
        for bar in bars:
            key = (bar.symbol, int(bar.timeframe))
            if not self.engine.knows(key):
                self.engine.warm(key)
            result = self.engine.process(bar)
            self.committer.batch.add_qualities(self.engine.take_rechecked())
            self.committer.batch.add(result, bar)
        await self.committer.flush()


def service_parts(
    pool: asyncpg.Pool,
    client: redis.Redis,
    consumer: str | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
) -> ServiceParts:
    """Fresh parts on the run's database and Redis, by default with a consumer name of their own.

    `clock_ns` is the engine's wall clock (when bars are received).
    """
    core = CoreMetrics()
    metrics = AnalyticsMetrics(core.registry)
    store = AnalyticsStore(pool, core, consumer or unique_symbol("consumer-"))
    hub = AnalyticsHub(backlog_limit=1000)
    committer = GroupCommitter(store, AnalyticsCache(client), hub, metrics, 0.05, 500)
    return ServiceParts(AnalyticsEngine(clock_ns=clock_ns), store, hub, committer, metrics)
