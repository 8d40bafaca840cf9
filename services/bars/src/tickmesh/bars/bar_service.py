"""BarService over gRPC: live bar streams with a resume point, and range queries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial

import grpc
from grpc import aio

from tickmesh.bars.bar_cache import BarCache
from tickmesh.bars.bar_history import fetch_as_of, history_start_ns
from tickmesh.bars.bar_metrics import BarMetrics
from tickmesh.bars.store import BarStore
from tickmesh.bars.subscriptions import BarFilter, BarHub, SubscriberOverflowError
from tickmesh.bars.version_log import BarVersionLog
from tickmesh.core.errors import InvalidArgument
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.core.live_after import LIVE_AFTER_HEADER
from tickmesh.core.protowire import embedded
from tickmesh.core.replay import (
    DEFAULT_PAGE_SIZE,
    ReplayError,
    ReplaySession,
    first_start,
    replay_plan,
)
from tickmesh.core.sharding import Shard, check_owned
from tickmesh.core.timeframes import BY_PROTO, from_proto
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2, replay_pb2

log = logging.getLogger(__name__)

MAX_LIMIT = 5000
DEFAULT_LIMIT = 500
REPLAY_PAGE = 2000
FAR_FUTURE_NS = 2**62
# Versions a page for batched replays. Kept small on purpose: a page is one row of about
# 150 bytes a version, and past roughly 600 KB a row (measured: 5,000 versions and more)
# the backend's memory for each query was handed back to the kernel and faulted in again
# at the next, which nearly doubled PostgreSQL's cost a version (0.43 -> 0.8 us) and made it
# the replay's bottleneck. 2,500 leaves room for larger bars; more queries cost little.
BULK_PAGE = 2_500
# Bars a Subscribe response holds at most when batches are asked for: a few hundred KB, well
# under gRPC's default 4 MB message limit even with trace contexts on every bar.
MAX_SUBSCRIBE_BATCH = 1000
# SubscribeResponse's field numbers: `bar` for one bar (as live), `bars` for a batch.
_BAR_FIELD = bar_service_pb2.SubscribeResponse.BAR_FIELD_NUMBER
_BARS_FIELD = bar_service_pb2.SubscribeResponse.BARS_FIELD_NUMBER


def read_instrument(field: str, message: market_pb2.Instrument) -> InstrumentId:
    """The InstrumentId of a request's Instrument; InvalidArgument naming `field` if malformed."""
    try:
        return InstrumentId.from_proto(message)
    except InstrumentError as error:
        raise InvalidArgument(f"{field}: {error}") from None


def _check_range(request: bar_service_pb2.GetBarsRequest) -> tuple[int, int, int]:
    if request.timeframe not in BY_PROTO:
        raise InvalidArgument(f"timeframe: unknown or unspecified ({request.timeframe})")
    if not 0 <= request.limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit: must be 1..{MAX_LIMIT} (0 means {DEFAULT_LIMIT})")
    if request.start_time_ns < 0 or request.end_time_ns < 0:
        raise InvalidArgument("start_time_ns/end_time_ns: must not be negative")
    end = request.end_time_ns or FAR_FUTURE_NS
    if request.start_time_ns >= end:
        raise InvalidArgument("start_time_ns: must be before end_time_ns")
    return request.start_time_ns, end, request.limit or DEFAULT_LIMIT


class BarServicer(bar_service_pb2_grpc.BarServiceServicer):
    """Serves persisted bars from the cache or PostgreSQL and live bars from the hub."""

    def __init__(
        self,
        store: BarStore,
        cache: BarCache,
        hub: BarHub,
        metrics: BarMetrics,
        shard: Shard | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._hub = hub
        self._metrics = metrics
        self._shard = shard or Shard()

    async def GetBars(
        self, request: bar_service_pb2.GetBarsRequest, context: aio.ServicerContext
    ) -> bar_service_pb2.GetBarsResponse:
        """The latest `limit` final bars in the range, oldest first: through the cache, or as
        known at `as_of_ns` from the revision history."""
        instrument = read_instrument("instrument", request.instrument)
        start, end, limit = _check_range(request)
        check_owned(self._shard, [instrument])
        label = from_proto(request.timeframe).label
        if request.HasField("as_of_ns"):
            # The cache holds the present; a past instant is read from the history itself.
            past = await fetch_as_of(
                self._store.pool, instrument, label, start, end, limit, request.as_of_ns
            )
            return bar_service_pb2.GetBarsResponse(bars=past)
        bars = await self._cache.get_range(
            instrument, request.timeframe, start, end, limit, self._load_latest
        )
        if bars is None:
            bars = await self._store.fetch_range(instrument, label, start, end, limit)
        return bar_service_pb2.GetBarsResponse(bars=bars)

    async def _load_latest(
        self, instrument: InstrumentId, timeframe: str, count: int
    ) -> list[market_pb2.Bar]:
        return await self._store.fetch_range(instrument, timeframe, 0, FAR_FUTURE_NS, count)

    async def Subscribe(
        self, request: bar_service_pb2.SubscribeRequest, context: aio.ServicerContext
    ) -> AsyncIterator[bar_service_pb2.SubscribeResponse]:
        """Replay persisted bars after the resume point, then stream live ones, no gap, no duplicate."""
        for timeframe in request.timeframes:
            if timeframe not in BY_PROTO:
                raise InvalidArgument(f"timeframes: unknown or unspecified ({timeframe})")
        instruments = [
            read_instrument(f"instruments[{index}]", message)
            for index, message in enumerate(request.instruments)
        ]
        # No instruments means every instrument of this shard (the replay and the hub hold no others).
        check_owned(self._shard, instruments)
        bar_filter = BarFilter(
            frozenset((i.exchange, i.symbol) for i in instruments),
            frozenset(request.timeframes),
            request.include_forming,
        )
        # Subscribe before replaying, so bars committed during the replay wait in the queue.
        subscription = self._hub.subscribe(bar_filter)
        self._metrics.subscribers.set(self._hub.subscriber_count)
        # Headers now, not with the first bar: the call is live, and every final after this
        # change id reaches it. A client reopening a stream with another filter closes the old
        # call only then, and resumes later calls from there (gateway.shard_streams).
        await context.send_initial_metadata(((LIVE_AFTER_HEADER, str(self._hub.newest_change_id)),))
        handler = asyncio.current_task()
        if handler is not None:

            def interrupt() -> None:
                handler.cancel()

            subscription.on_overflow = interrupt
        batch = min(max(1, request.max_batch), MAX_SUBSCRIBE_BATCH)
        try:
            last_change_id = 0
            if request.HasField("resume_after_change_id"):
                last_change_id = request.resume_after_change_id
                async for bars in self._replay(request, instruments, last_change_id):
                    last_change_id = bars[-1].change_id
                    for response in _responses(bars, batch):
                        yield response
            while True:
                live = [
                    bar
                    for bar in await subscription.next_items()
                    # Finals at or before the last replayed one came from the database already.
                    if not (bar.final and bar.change_id <= last_change_id)
                ]
                for response in _responses(live, batch):
                    yield response
        except SubscriberOverflowError as error:
            log.warning("ending a slow subscriber: %s", error)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except asyncio.CancelledError:
            if not subscription.overflowed or handler is None:
                raise
            # Interrupted by on_overflow while blocked writing to a reader that stopped reading.
            handler.uncancel()
            log.warning(
                "ending a slow subscriber: backlog over %d finals", subscription.backlog_limit
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"subscriber fell more than {subscription.backlog_limit} final bars behind; "
                "resume from the last change_id received",
            )
        finally:
            self._hub.unsubscribe(subscription)
            self._metrics.subscribers.set(self._hub.subscriber_count)

    async def _replay(
        self,
        request: bar_service_pb2.SubscribeRequest,
        instruments: list[InstrumentId],
        after: int,
    ) -> AsyncIterator[list[market_pb2.Bar]]:
        """Pages of persisted bars after `after`, in change-id order (none empty)."""
        labels = [from_proto(tf).label for tf in request.timeframes]
        while True:
            bars, last_seen = await self._store.fetch_changes(
                after, instruments, labels, REPLAY_PAGE
            )
            if bars:
                yield bars
            if last_seen is None:
                return
            after = last_seen

    async def Replay(  # type: ignore[override]  # yields pre-encoded responses (raw_response_methods)
        self,
        request_iterator: AsyncIterator[replay_pb2.ReplayRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        """Stored finals and revisions in the live stream's order and bytes, paced and steered."""
        try:
            start = await first_start(aiter(request_iterator))
            plan = replay_plan(start, time.time_ns(), batches=True)
        except ReplayError as error:
            raise InvalidArgument(str(error)) from None
        for timeframe in start.timeframes:
            if timeframe not in BY_PROTO:
                raise InvalidArgument(f"timeframes: unknown or unspecified ({timeframe})")
        instruments = [
            read_instrument(f"instruments[{index}]", message)
            for index, message in enumerate(start.instruments)
        ]
        check_owned(self._shard, instruments)
        # One bar a response goes in `bar`, as live; batches in `bars`.
        field = _BAR_FIELD if plan.max_batch == 1 else _BARS_FIELD
        log_ = BarVersionLog(
            self._store.pool,
            instruments,
            [from_proto(tf).label for tf in start.timeframes],
            self._shard,
            await history_start_ns(self._store.pool),
            self._metrics.replay_pages,
        )
        # Framing here rather than in SQL: PostgreSQL is the replay's bottleneck, and the
        # framing costs it more than it costs this process. Two pages of bars are well under
        # a MiB (BULK_PAGE) or a few MiB (one bar a response).
        page_size = BULK_PAGE if plan.max_batch > 1 else DEFAULT_PAGE_SIZE
        session = ReplaySession(log_, plan, partial(embedded, field), page_size=page_size)

        # When the call ends with a send waiting (client gone, server stopping), gRPC leaves
        # this generator suspended: the steering task and the page read ahead stop here at
        # once rather than whenever the generator is collected.
        def abandon(_: object) -> None:
            session.abandon()
            log_.abandon()

        context.add_done_callback(abandon)
        try:
            async with contextlib.aclosing(session.responses(request_iterator)) as responses:
                async for response in responses:
                    yield response
        except ReplayError as error:
            raise InvalidArgument(str(error)) from None
        finally:
            await log_.close()


def _responses(
    bars: list[market_pb2.Bar], batch: int
) -> Iterator[bar_service_pb2.SubscribeResponse]:
    """`bars` as Subscribe responses: one a response in `bar`, or up to `batch` in `bars`."""
    if batch == 1:
        for bar in bars:
            yield bar_service_pb2.SubscribeResponse(bar=bar)
        return
    for start in range(0, len(bars), batch):
        yield bar_service_pb2.SubscribeResponse(bars=bars[start : start + batch])
