"""The latest-row hashes in a real Redis: newest row per stream, nothing left of an older one."""

from __future__ import annotations

import secrets

import redis.asyncio as redis

from tickmesh.analytics.analytics_cache import AnalyticsCache
from tickmesh.analytics.results import Features, Indicators
from tickmesh.core.cache import features_key, indicators_key
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2

MINUTE_NS = 60 * 1_000_000_000
ONE_MINUTE = market_pb2.TIMEFRAME_1M


async def test_put_latest_replaces_each_hash_with_its_streams_newest_row(
    redis_client: redis.Redis,
) -> None:
    tag = secrets.token_hex(4).upper()
    first, second = (InstrumentId.parse(f"binance_usdm:{name}{tag}") for name in "AB")
    cache = AnalyticsCache(redis_client)
    await cache.put_latest(
        [Indicators(first, ONE_MINUTE, MINUTE_NS, rsi=40.0, sma_50=7.5)],
        [Features(first, ONE_MINUTE, MINUTE_NS, "v1", {"return_1": 0.5})],
    )
    # A commit of several rows: the newest of each stream wins, whatever the order; a value
    # the newer row lacks (sma_50) must not survive from the older one.
    await cache.put_latest(
        [
            Indicators(first, ONE_MINUTE, 3 * MINUTE_NS, rsi=42.5),
            Indicators(first, ONE_MINUTE, 2 * MINUTE_NS, rsi=41.0, sma_50=8.0),
            Indicators(second, ONE_MINUTE, 2 * MINUTE_NS, sma_20=1.25),
        ],
        [Features(second, ONE_MINUTE, 2 * MINUTE_NS, "v1", {"return_1": -0.25, "range": 2.0})],
    )
    keys = [
        indicators_key(first, "1m"),
        indicators_key(second, "1m"),
        features_key(first, "1m"),
        features_key(second, "1m"),
    ]
    found = [await redis_client.hgetall(key) for key in keys]
    await redis_client.delete(*keys)
    assert found == [
        {b"open_time_ns": str(3 * MINUTE_NS).encode(), b"rsi": b"42.5"},
        {b"open_time_ns": str(2 * MINUTE_NS).encode(), b"sma_20": b"1.25"},
        {b"open_time_ns": str(MINUTE_NS).encode(), b"feature_version": b"v1", b"return_1": b"0.5"},
        {
            b"open_time_ns": str(2 * MINUTE_NS).encode(),
            b"feature_version": b"v1",
            b"return_1": b"-0.25",
            b"range": b"2.0",
        },
    ]
