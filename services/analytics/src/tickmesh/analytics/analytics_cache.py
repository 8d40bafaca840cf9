"""Redis hashes of the latest indicators and features per instrument and timeframe (the seed's keys)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import msgspec
import redis.asyncio as redis

from tickmesh.analytics.results import Features, Indicators
from tickmesh.analytics.rows import timeframe_label
from tickmesh.core.cache import features_key, indicators_key
from tickmesh.core.instruments import InstrumentId

_Row = TypeVar("_Row", Indicators, Features)

# The hashes of a commit replaced by a script call per HASHES_PER_CALL hashes, each hash's
# fields as one flat JSON object: each hash is replaced atomically, and one argument a hash
# instead of two a field. redis-py packs each argument in Python (~1 us): at a whole market's
# minute close (4,000 hashes, ~140,000 fields) that held analytics ~400 ms between its commit
# and handing the indicators to subscribers. The objects are written by msgspec (15x faster
# than repr per value, which took ~100 ms more a burst) and read in Lua as text, not with
# cjson, whose numbers would lose digits: each value is stored as the JSON spelled it, a
# string without its quotes. A hash is deleted first: an indicator without a value (or null)
# must not keep an older one.
_REPLACE_HASHES = """
for k = 1, #KEYS do
  redis.call('DEL', KEYS[k])
  local flat = {}
  for name, value in string.gmatch(ARGV[k], '"([^"]+)":"?([^,"}]*)') do
    if value ~= 'null' then
      flat[#flat + 1] = name
      flat[#flat + 1] = value
    end
  end
  if #flat > 0 then
    redis.call('HSET', KEYS[k], unpack(flat))
  end
end
return #KEYS
"""
_JSON = msgspec.json.Encoder()
# A script blocks every other Redis client while it runs: one call for a whole market's 4,000
# hashes held the bar service's cache writes and the gateway's reads for 100-300 ms. Calls of
# this many hashes (~10 ms each) let them in between, for a round trip per call.
HASHES_PER_CALL = 250


def indicators_hash(indicators: Indicators) -> dict[str, str | float]:
    """The hash fields of one bar's indicators: open_time_ns plus every indicator with a value."""
    return {"open_time_ns": str(indicators.open_time_ns), **indicators.values()}


def features_hash(features: Features) -> dict[str, str | float]:
    """The hash fields of one bar's features: open_time_ns, feature_version and every value."""
    return {
        "open_time_ns": str(features.open_time_ns),
        "feature_version": features.feature_version,
        **features.values,
    }


def newest_per_stream(items: Iterable[_Row]) -> list[_Row]:
    """Keep the newest item (by open time) of each instrument and timeframe."""
    newest: dict[tuple[InstrumentId, int], _Row] = {}
    for item in items:
        key = (item.instrument, item.timeframe)
        held = newest.get(key)
        if held is None or item.open_time_ns >= held.open_time_ns:
            newest[key] = item
    return list(newest.values())


class AnalyticsCache:
    """Writes `indicators:{venue}:{symbol}:{tf}:latest` and `features:…:latest` after each commit."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def put_latest(
        self, indicators: Iterable[Indicators], features: Iterable[Features]
    ) -> None:
        """Replace each touched hash with the newest committed row of its stream, a few hundred
        hashes a command."""
        writes: dict[str, Mapping[str, str | float]] = {}
        for row in newest_per_stream(indicators):
            writes[indicators_key(row.instrument, timeframe_label(row.timeframe))] = (
                indicators_hash(row)
            )
        for values in newest_per_stream(features):
            label = timeframe_label(values.timeframe)
            writes[features_key(values.instrument, label)] = features_hash(values)
        script = self._client.register_script(_REPLACE_HASHES)
        keys = list(writes)
        for start in range(0, len(keys), HASHES_PER_CALL):
            chunk = keys[start : start + HASHES_PER_CALL]
            await script(keys=chunk, args=[_JSON.encode(writes[key]) for key in chunk])
