"""Redis through redis.asyncio, with the seed's key layout in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio as redis

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.startup import connect_with_retry

SYSTEM_HEALTH_KEY = "system:health"


def bars_key(instrument: InstrumentId, timeframe: str) -> str:
    """Sorted set of the latest bars (score: open time in ms, member: bar JSON).

    Keys name the instrument's text form: "bars:binance_usdm:BTCUSDT:1m".
    """
    return f"bars:{instrument}:{timeframe}"


def indicators_key(instrument: InstrumentId, timeframe: str) -> str:
    """Hash of the latest indicator values."""
    return f"indicators:{instrument}:{timeframe}:latest"


def features_key(instrument: InstrumentId, timeframe: str) -> str:
    """Hash of the latest feature values."""
    return f"features:{instrument}:{timeframe}:latest"


def alerts_judged_key() -> str:
    """Sorted set: per "<venue>:<symbol>:<timeframe>", the open time (ms) of the newest bar alerts judged."""
    return "alerts:judged"


def alert_firings_channel() -> str:
    """Pub/sub channel of recorded alert firings, for every gateway replica's WebSockets."""
    return "alerts:fired"


def rate_limit_key(client_id: str, route_class: str) -> str:
    """Token bucket of one client and route class."""
    return f"rate_limit:{client_id}:{route_class}"


async def open_redis(
    url: str, metrics: CoreMetrics, give_up_after_seconds: float = 60.0
) -> redis.Redis:
    """Connect to `url` and PING it, retrying with backoff while unreachable."""

    async def connect() -> redis.Redis:
        client = redis.Redis.from_url(url, decode_responses=False, health_check_interval=30)
        try:
            await client.ping()
        except redis.ConnectionError as error:
            await client.aclose()
            raise ConnectionError(str(error)) from error
        return client

    return await connect_with_retry("redis", connect, metrics, give_up_after_seconds)


async def replace_in_capped_zset(
    client: redis.Redis,
    key: str,
    members: Sequence[tuple[int, bytes]],
    keep_latest: int,
) -> None:
    """Put (score, member) pairs, replacing any member at the same score, keep the top N scores.

    Replacing by score is what makes a revised bar overwrite its old version instead of
    sitting beside it.
    """
    await replace_in_capped_zsets(client, {key: members}, keep_latest)


# One script call puts a whole group commit's bars: atomic like MULTI/EXEC, but one command
# instead of three per bar. Through a transaction pipeline a whole market's minute (2,000
# bars, 6,000 commands) cost the bar service ~600 ms of CPU packing commands and parsing
# replies, between the commit and publishing the finals; the script costs it a few ms.
# ARGV: keep_latest, then per key its member count followed by (score, member) pairs.
_REPLACE_IN_CAPPED_ZSETS = """
local keep = tonumber(ARGV[1])
local at = 2
for k = 1, #KEYS do
  local key = KEYS[k]
  local count = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, count do
    local score = ARGV[at]
    redis.call('ZREMRANGEBYSCORE', key, score, score)
    redis.call('ZADD', key, score, ARGV[at + 1])
    at = at + 2
  end
  redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1))
end
return #KEYS
"""


async def replace_in_capped_zsets(
    client: redis.Redis,
    members_by_key: Mapping[str, Sequence[tuple[int, bytes]]],
    keep_latest: int,
) -> None:
    """`replace_in_capped_zset` for many keys, atomically, in one command (a Lua script)."""
    keys = [key for key, members in members_by_key.items() if members]
    if not keys:
        return
    args: list[int | bytes] = [keep_latest]
    for key in keys:
        members = members_by_key[key]
        args.append(len(members))
        for score, member in members:
            args.append(score)
            args.append(member)
    await client.register_script(_REPLACE_IN_CAPPED_ZSETS)(keys=keys, args=args)
