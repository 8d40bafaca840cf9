"""How far the alert engines of all gateway replicas have judged each instrument and timeframe.

One Redis sorted set: member "<venue>:<symbol>:<timeframe>" (e.g. "binance_usdm:BTCUSDT:1m"), score the open time (ms, exact in a
double) of the newest final bar judged. ZADD GT only moves it forward, so replicas racing
on the same bar cannot move it back. A gateway that starts (or whose upstream stream broke)
judges the bars after the mark before the live ones: bars that became final while every
replica was down still fire their alerts, and `record_firing` keeps each firing single.
"""

from __future__ import annotations

import redis.asyncio as redis

from tickmesh.core.cache import alerts_judged_key
from tickmesh.core.instruments import InstrumentId

NS_PER_MS = 1_000_000


class AlertCursor:
    """The judged-through mark per (instrument, timeframe label), shared by every replica."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def judged_through(self, instrument: InstrumentId, timeframe: str) -> int | None:
        """Open time (ns) of the newest bar judged, None when none was."""
        score = await self._client.zscore(alerts_judged_key(), series_member(instrument, timeframe))
        return None if score is None else int(score) * NS_PER_MS

    async def advance(self, instrument: InstrumentId, timeframe: str, open_time_ns: int) -> None:
        """Record that the bar opening at `open_time_ns` was judged (never moves back)."""
        member = series_member(instrument, timeframe)
        await self._client.zadd(alerts_judged_key(), {member: open_time_ns // NS_PER_MS}, gt=True)

    async def start(self, instrument: InstrumentId, timeframe: str, open_time_ns: int) -> None:
        """Set the mark of a series no replica judged yet (never overrides an existing one)."""
        member = series_member(instrument, timeframe)
        await self._client.zadd(alerts_judged_key(), {member: open_time_ns // NS_PER_MS}, nx=True)


def series_member(instrument: InstrumentId, timeframe: str) -> str:
    """The sorted-set member of a series: "<venue>:<symbol>:<timeframe>"."""
    return f"{instrument}:{timeframe}"
