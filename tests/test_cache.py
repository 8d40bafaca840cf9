"""Redis helpers: a revised bar replaces its old version; the sorted set stays capped."""

from __future__ import annotations

import secrets

import redis.asyncio as redis

from tickmesh.core.cache import bars_key, replace_in_capped_zset, replace_in_capped_zsets
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


async def test_capped_zsets_of_many_keys_are_put_in_one_call(redis_client: redis.Redis) -> None:
    # A group commit's bars: several sets at once, a revision among them, each capped alone.
    tag = secrets.token_hex(4).upper()
    first, second, untouched = (
        bars_key(InstrumentId.parse(f"binance_usdm:{name}{tag}"), "1m") for name in "ABC"
    )
    await redis_client.zadd(untouched, {b"kept": 1})
    await replace_in_capped_zsets(
        redis_client,
        {
            first: [(t, f"a{t}".encode()) for t in range(4)],
            second: [(7, b"b7")],
            untouched: [],
        },
        keep_latest=3,
    )
    await replace_in_capped_zsets(
        redis_client, {first: [(3, b"a3-revised"), (4, b"a4")], second: [(8, b"b8")]}, 3
    )
    found = {
        key: await redis_client.zrange(key, 0, -1, withscores=True)
        for key in (first, second, untouched)
    }
    await redis_client.delete(first, second, untouched)
    assert found == {
        first: [(b"a2", 2.0), (b"a3-revised", 3.0), (b"a4", 4.0)],
        second: [(b"b7", 7.0), (b"b8", 8.0)],
        untouched: [(b"kept", 1.0)],
    }
