"""The latest-row hashes in a real Redis: newest row per stream, nothing left of an older one."""

from __future__ import annotations

import math
import secrets

import redis.asyncio as redis

from tickmesh.analytics.analytics_cache import HASHES_PER_CALL, AnalyticsCache
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


async def test_put_latest_keeps_every_digit_and_drops_values_that_are_not_numbers(
    redis_client: redis.Redis,
) -> None:
    instrument = InstrumentId.parse(f"binance_spot:DIGITS{secrets.token_hex(4).upper()}")
    values = {"tiny": 1e-05, "huge": 1.2345678901234568e16, "sum": 0.1 + 0.2, "nan": math.nan}
    cache = AnalyticsCache(redis_client)
    await cache.put_latest(
        [Indicators(instrument, ONE_MINUTE, MINUTE_NS, rsi=0.1 + 0.2, sma_20=5e-324)],
        [Features(instrument, ONE_MINUTE, MINUTE_NS, "v1", values)],
    )
    keys = [indicators_key(instrument, "1m"), features_key(instrument, "1m")]
    indicators, features = [await redis_client.hgetall(key) for key in keys]
    await redis_client.delete(*keys)
    # The text may spell a number differently from repr (0.00001), never a different number.
    assert float(indicators[b"rsi"]) == 0.1 + 0.2
    assert float(indicators[b"sma_20"]) == 5e-324
    assert features.pop(b"feature_version") == b"v1"
    assert {name: float(text) for name, text in features.items()} == {
        b"open_time_ns": MINUTE_NS,
        b"tiny": 1e-05,
        b"huge": 1.2345678901234568e16,
        b"sum": 0.1 + 0.2,
    }


async def test_put_latest_writes_every_hash_of_a_commit_larger_than_one_script_call(
    redis_client: redis.Redis,
) -> None:
    tag = secrets.token_hex(4).upper()
    count = HASHES_PER_CALL + 7  # indicators and features: four calls, the last a short one
    instruments = [InstrumentId.parse(f"binance_spot:M{k}X{tag}") for k in range(count)]
    cache = AnalyticsCache(redis_client)
    await cache.put_latest(
        [Indicators(i, ONE_MINUTE, MINUTE_NS, rsi=float(k)) for k, i in enumerate(instruments)],
        [Features(i, ONE_MINUTE, MINUTE_NS, "v1", {"r": -k}) for k, i in enumerate(instruments)],
    )
    rsi_keys = [indicators_key(i, "1m") for i in instruments]
    feature_keys = [features_key(i, "1m") for i in instruments]
    rsi = [await redis_client.hget(key, "rsi") for key in rsi_keys]
    returns = [await redis_client.hget(key, "r") for key in feature_keys]
    await redis_client.delete(*rsi_keys, *feature_keys)
    assert [float(value or "nan") for value in rsi] == [float(k) for k in range(count)]
    assert [float(value or "nan") for value in returns] == [float(-k) for k in range(count)]
