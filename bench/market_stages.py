"""Where a minute's close goes on its way to the WebSocket clients: the whole-market bench's probe.

The clients time the end of the path (close -> final bar, close -> indicator row on a
client). To tell where that time goes, the bench also follows the two upstream streams the
gateway follows, as one more subscriber of each: the bar service's live final 1m bars and
analytics' live 1m updates, every instrument on one stream each. Each message carries when
its rows were committed (`committed_at_ns`, stamped inside the writing transaction) and the
probe notes when it arrived, so from a minute's close there are four more points:

- bars committed: the bar service finalised the minute and was writing it;
- bars streamed: the bar was committed, cached and published, and reached a subscriber;
- analytics committed: analytics received the bar, computed it and was writing its rows;
- analytics streamed: those rows were committed and published, and reached a subscriber.

One extra stream of each kind is a few thousand messages a minute: next to the gateway's
2,000 streams of each, it changes the load little.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from grpc import aio

from bench.market_latency import MINUTE_MS
from tickmesh.v2 import (
    analytics_service_pb2,
    analytics_service_pb2_grpc,
    bar_service_pb2,
    bar_service_pb2_grpc,
    market_pb2,
)

NS_PER_MS = 1_000_000


@dataclass
class StageTimes:
    """Per stage, ms after the minute's close of every first final (revision 0) seen."""

    bars_committed: list[float] = field(default_factory=list)
    bars_streamed: list[float] = field(default_factory=list)
    analytics_committed: list[float] = field(default_factory=list)
    analytics_streamed: list[float] = field(default_factory=list)


@dataclass
class _Seen:
    """One message: its bar's open time (ms), its commit time and arrival (ms since the epoch)."""

    open_ms: int
    committed_ms: float
    received_ms: float


@dataclass
class StageProbe:
    """Follows the bar and analytics streams of every instrument's 1m bars, noting commit and arrival."""

    bars: list[_Seen] = field(default_factory=list)
    analytics: list[_Seen] = field(default_factory=list)

    async def follow(self, bars: aio.Channel, analytics: aio.Channel) -> None:
        """Follow both streams until cancelled; closes the channels when done."""
        async with bars, analytics, asyncio.TaskGroup() as group:
            group.create_task(self._follow_bars(bars))
            group.create_task(self._follow_analytics(analytics))

    async def _follow_bars(self, channel: aio.Channel) -> None:
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        # In batches, as analytics asks (a bar service that does not batch sends one a response).
        request = bar_service_pb2.SubscribeRequest(
            timeframes=[market_pb2.TIMEFRAME_1M], include_forming=False, max_batch=500
        )
        async for response in stub.Subscribe(request):
            received_ms = time.time() * 1000
            for bar in response.bars if len(response.bars) else (response.bar,):
                if bar.final and bar.revision == 0:
                    self.bars.append(
                        _Seen(
                            bar.open_time_ns // NS_PER_MS,
                            bar.committed_at_ns / NS_PER_MS,
                            received_ms,
                        )
                    )

    async def _follow_analytics(self, channel: aio.Channel) -> None:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        request = analytics_service_pb2.AnalyticsServiceSubscribeRequest(
            timeframes=[market_pb2.TIMEFRAME_1M]
        )
        async for response in stub.Subscribe(request):
            received_ms = time.time() * 1000
            if response.HasField("indicators") and response.bar_revision == 0:
                self.analytics.append(
                    _Seen(
                        response.indicators.open_time_ns // NS_PER_MS,
                        response.committed_at_ns / NS_PER_MS,
                        received_ms,
                    )
                )

    def stages(self, since_ms: float, until_ms: float) -> StageTimes:
        """The stage times of minutes opening in [since_ms, until_ms)."""
        times = StageTimes()
        for seen in self.bars:
            if since_ms <= seen.open_ms < until_ms:
                close_ms = seen.open_ms + MINUTE_MS
                times.bars_committed.append(seen.committed_ms - close_ms)
                times.bars_streamed.append(seen.received_ms - close_ms)
        for seen in self.analytics:
            if since_ms <= seen.open_ms < until_ms:
                close_ms = seen.open_ms + MINUTE_MS
                times.analytics_committed.append(seen.committed_ms - close_ms)
                times.analytics_streamed.append(seen.received_ms - close_ms)
        return times


def _spread(values: list[float]) -> str:
    """min / p50 / max of ms values, or a dash when there are none."""
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[0]:.0f}/{ordered[len(ordered) // 2]:.0f}/{ordered[-1]:.0f}"


def timeline(
    probe: StageProbe,
    finals: list[list[float]],
    indicators: list[list[float]],
    since_ms: float,
    until_ms: float,
) -> list[str]:
    """One line per measured minute: ms after its close (min/p50/max) at each stage, in order.

    `finals` and `indicators` are the clients' receipts as [index, open time (s), received].
    """
    stages: dict[int, dict[str, list[float]]] = {}

    def note(stage: str, open_ms: float, at_ms: float) -> None:
        if since_ms <= open_ms < until_ms:
            minute = stages.setdefault(int(open_ms), {})
            minute.setdefault(stage, []).append(at_ms - open_ms - MINUTE_MS)

    for seen in probe.bars:
        note("bars committed", seen.open_ms, seen.committed_ms)
        note("bar stream", seen.open_ms, seen.received_ms)
    for _, open_s, received_ms in finals:
        note("client final", open_s * 1000, received_ms)
    for seen in probe.analytics:
        note("analytics committed", seen.open_ms, seen.committed_ms)
        note("analytics stream", seen.open_ms, seen.received_ms)
    for _, open_s, received_ms in indicators:
        note("client indicators", open_s * 1000, received_ms)
    order = (
        "bars committed",
        "bar stream",
        "client final",
        "analytics committed",
        "analytics stream",
        "client indicators",
    )
    return [
        f"minute {time.strftime('%H:%M', time.gmtime(open_ms / 1000))} close -> (min/p50/max ms) "
        + "; ".join(f"{stage} {_spread(stages[open_ms].get(stage, []))}" for stage in order)
        for open_ms in sorted(stages)
    ]
