"""Redis helpers: a revised bar replaces its old version; the sorted set stays capped."""

from __future__ import annotations

import secrets

import redis.asyncio as redis

from tickmesh.core.cache import bars_key, replace_in_capped_zset
from tickmesh.core.instruments import InstrumentId


async def test_capped_zset_replaces_same_score_and_keeps_latest(
    redis_client: redis.Redis,
) -> None:
    key = bars_key(InstrumentId.parse(f"binance_usdm:T{secrets.token_hex(4).upper()}"), "1m")
    assert key.startswith("bars:binance_usdm:T")
    await replace_in_capped_zset(
        redis_client, key, [(t, f"bar{t}".encode()) for t in range(10)], keep_latest=5
    )
    await replace_in_capped_zset(redis_client, key, [(9, b"bar9-revised")], keep_latest=5)
    members = await redis_client.zrange(key, 0, -1, withscores=True)
    await redis_client.delete(key)
    assert members == [
        (b"bar5", 5.0),
        (b"bar6", 6.0),
        (b"bar7", 7.0),
        (b"bar8", 8.0),
        (b"bar9-revised", 9.0),
    ]
