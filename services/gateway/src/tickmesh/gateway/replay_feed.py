"""BarService.Replay and AnalyticsService.Replay of one instrument, merged in commit-time order.

Both upstreams run at maximum speed and are read into small bounded queues: when the gateway
stops taking items (the browser is slow, or the replay is paused), the queues fill, the
readers stop reading and gRPC flow control stops the services. Nothing is buffered without
bound. Pacing is the gateway's (`ReplayClock`), so the two streams share one clock and merge
exactly: each step takes the earlier head of the two by commit time, bars first on a tie
(a bar's indicators are computed after the bar is stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from grpc import aio

from tickmesh.core.errors import DomainError, Unavailable
from tickmesh.core.instruments import InstrumentId
from tickmesh.gateway.backends import Backend, Backends
from tickmesh.v2 import (
    analytics_pb2,
    analytics_service_pb2,
    bar_service_pb2,
    market_pb2,
    replay_pb2,
)

log = logging.getLogger(__name__)

QUEUE_ITEMS = 256  # per upstream: enough to merge smoothly, small enough to brake at once
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """One replayed update: a bar or an indicator row, and when it was committed."""

    committed_at_ns: int
    bar: market_pb2.Bar | None = None
    indicators: analytics_pb2.Indicators | None = None


class UpstreamFailed(Exception):
    """An upstream replay ended with an error; `error` says what the backend answered."""

    def __init__(self, source: str, error: DomainError) -> None:
        super().__init__(f"{source} replay failed: {error}")
        self.source = source
        self.error = error


@dataclass(frozen=True, slots=True)
class _End:
    error: UpstreamFailed | None = None


class _Upstream(Generic[R]):
    """One Replay call read into a bounded queue by its own task."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        call: aio.StreamStreamCall[replay_pb2.ReplayRequest, R],
        items: Callable[[R], Iterable[ReplayItem]],
    ) -> None:
        self.name = name
        self._backend = backend
        self._call = call
        self._items = items
        self.queue: asyncio.Queue[ReplayItem | _End] = asyncio.Queue(QUEUE_ITEMS)
        self.head: ReplayItem | None = None
        self.ended = False
        self.last_ns = 0  # forming bars carry no commit time: they keep their stream's place
        self._task = asyncio.create_task(self._read(), name=f"replay-{name}")

    async def _read(self) -> None:
        end = _End()
        try:
            async for response in self._call:
                for item in self._items(response):
                    await self.queue.put(item)
        except aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                end = _End(UpstreamFailed(self.name, self._backend.domain_error(error)))
        except Exception as error:  # a reader that died silently would hang the merge
            log.exception("%s replay reader failed", self.name)
            end = _End(UpstreamFailed(self.name, Unavailable(f"{type(error).__name__}")))
        await self.queue.put(end)

    async def fill(self) -> UpstreamFailed | None:
        """Take the next item as the head unless there is one or the stream ended."""
        if self.head is not None or self.ended:
            return None
        got = await self.queue.get()
        if isinstance(got, _End):
            self.ended = True
            return got.error
        self.last_ns = max(self.last_ns, got.committed_at_ns)
        self.head = got
        return None

    def key(self) -> int:
        """The head's place in commit order."""
        assert self.head is not None
        return self.head.committed_at_ns or self.last_ns

    async def close(self) -> None:
        """Cancel the call and the reader."""
        self._call.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _bar_items(response: bar_service_pb2.SubscribeResponse) -> Iterable[ReplayItem]:
    bars: Iterable[market_pb2.Bar] = response.bars if len(response.bars) else [response.bar]
    return [ReplayItem(bar.committed_at_ns, bar=bar) for bar in bars if bar.open_time_ns]


def _analytics_items(
    response: analytics_service_pb2.AnalyticsServiceSubscribeResponse,
) -> Iterable[ReplayItem]:
    if not response.HasField("indicators"):
        return ()  # features and quality stay on REST, as on the live socket
    return (ReplayItem(response.committed_at_ns, indicators=response.indicators),)


async def _requests(start: replay_pb2.ReplayStart) -> AsyncIterator[replay_pb2.ReplayRequest]:
    # Steering happens here in the gateway, so the call only ever needs its start.
    yield replay_pb2.ReplayRequest(start=start)


class MergedReplay:
    """The bar and indicator replays of one instrument and timeframe, one ordered stream."""

    def __init__(
        self,
        backends: Backends,
        instrument: InstrumentId,
        timeframe: int,
        start_ns: int,
        end_ns: int,
    ) -> None:
        start = replay_pb2.ReplayStart(
            instruments=[instrument.to_proto()],
            timeframes=[timeframe],  # type: ignore[list-item]
            start_time_ns=start_ns,
            end_time_ns=end_ns,
            speed=0.0,  # paced here, on the merged stream
        )
        shard = backends.bar_shard(instrument)
        analytics = backends.analytics_shard(instrument)
        self._bars: _Upstream[Any] = _Upstream(
            "bars", shard, shard.stub.Replay(_requests(start)), _bar_items
        )
        self._analytics: _Upstream[Any] = _Upstream(
            "analytics",
            analytics,
            analytics.stub.Replay(_requests(start)),
            _analytics_items,
        )
        self.warnings: list[str] = []

    async def next(self) -> ReplayItem | None:
        """The next item in commit order; None when both replays ended.

        Raises UpstreamFailed when the bar replay fails; a failed indicator replay only adds a
        warning (the chart is the bars; indicators are overlays it can do without).
        """
        for upstream in (self._bars, self._analytics):
            failed = await upstream.fill()
            if failed is not None:
                if upstream is self._bars:
                    raise failed
                log.warning("%s", failed)
                self.warnings.append(f"indicators unavailable: {failed.error}")
        heads = [u for u in (self._bars, self._analytics) if u.head is not None]
        if not heads:
            return None
        first = min(heads, key=lambda upstream: upstream.key())  # bars first on a tie
        item, first.head = first.head, None
        return item

    async def close(self) -> None:
        """Cancel both calls."""
        await asyncio.gather(self._bars.close(), self._analytics.close())
