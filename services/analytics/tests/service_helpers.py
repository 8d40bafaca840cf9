"""Builders shared by the analytics service tests: proto bars, and the service's parts on real storage."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import asyncpg
import numpy as np
import redis.asyncio as redis
from grpc import aio

from tickmesh.analytics.analytics_cache import AnalyticsCache
from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.analytics_service import AnalyticsServicer, analytics_registration
from tickmesh.analytics.engine import AnalyticsEngine
from tickmesh.analytics.group_commit import GroupCommitter
from tickmesh.analytics.hub import AnalyticsHub
from tickmesh.analytics.store import AnalyticsStore
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.grpc_server import GrpcServer
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.v2 import analytics_service_pb2_grpc, market_pb2

if TYPE_CHECKING:  # the async stub exists only in the generated .pyi
    from tickmesh.v2.analytics_service_pb2_grpc import AnalyticsServiceAsyncStub as Stub

NS_PER_MINUTE = 60_000_000_000
START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01 00:00 UTC


def unique_symbol(prefix: str = "T") -> str:
    """A symbol no other test uses (the database lives for the whole run)."""
    return f"{prefix}{secrets.token_hex(4).upper()}"


def unique_instrument(
    prefix: str = "T", exchange: int = market_pb2.EXCHANGE_BINANCE_USDM
) -> InstrumentId:
    """An instrument no other test uses, on `exchange` (Binance USD-M by default)."""
    return InstrumentId(exchange, unique_symbol(prefix))


def decimal_text(value: float, places: int = 8) -> str:
    """A float as the bar service writes values: a plain decimal string without trailing zeros."""
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def value(bar: market_pb2.Bar, field: str) -> float:
    """A decimal-string field of a proto bar as the float analytics computes with."""
    return float(getattr(bar, field))


def walk_bars(
    instrument: InstrumentId, count: int, seed: int, first_change_id: int = 1
) -> list[market_pb2.Bar]:
    """`count` final 1m proto bars of a random walk, with growing change ids.

    Prices have 4 decimals and volumes 3, as exact decimal strings.
    """
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, count)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    volume = np.round(rng.uniform(1.0, 100.0, count), 3)
    taker_share = rng.uniform(0.0, 1.0, count)
    return [
        market_pb2.Bar(
            symbol=instrument.symbol,
            exchange=market_pb2.Exchange.ValueType(instrument.exchange),
            timeframe=market_pb2.TIMEFRAME_1M,
            open_time_ns=START_NS + i * NS_PER_MINUTE,
            open=decimal_text(open_[i], 4),
            high=decimal_text(high[i], 4),
            low=decimal_text(low[i], 4),
            close=decimal_text(close[i], 4),
            volume=decimal_text(volume[i], 3),
            quote_volume=decimal_text(volume[i] * close[i], 7),
            taker_buy_volume=decimal_text(volume[i] * taker_share[i], 3),
            trade_count=int(volume[i]) + 1,
            vwap=float(close[i]),
            final=True,
            change_id=first_change_id + i,
        )
        for i in range(count)
    ]


def replace_bar(bar: market_pb2.Bar, **changes: str | int) -> market_pb2.Bar:
    """A copy of a proto bar with some fields changed (values as decimal strings)."""
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
            key = self.engine.key_of(bar)
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


@asynccontextmanager
async def analytics_channel(servicer: AnalyticsServicer) -> AsyncIterator[aio.Channel]:
    """A channel to `servicer` served over real gRPC on a free loopback port, as __main__ registers it."""
    server = GrpcServer(
        "127.0.0.1:0", [analytics_registration(servicer)], CoreMetrics(), drain_seconds=0.1
    )
    await server.start()
    channel = open_channel(server.address)
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop()


@asynccontextmanager
async def serve_analytics(servicer: AnalyticsServicer) -> AsyncIterator[Stub]:
    """A client stub of `servicer` served as in `analytics_channel`."""
    async with analytics_channel(servicer) as channel:
        # grpc is untyped here, so mypy cannot pick the stub's aio.Channel overload by itself.
        yield cast("Stub", analytics_service_pb2_grpc.AnalyticsServiceStub(channel))
