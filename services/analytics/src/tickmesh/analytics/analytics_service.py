"""AnalyticsService: range queries over stored indicators and features (now or as of an instant),
the latest quality, live updates, and replays of the live stream from its log."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from grpc import aio

from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.engine import AnalyticsUpdate
from tickmesh.analytics.history_store import UpdateLogReplay
from tickmesh.analytics.hub import AnalyticsHub, SubscriberOverflowError, UpdateFilter
from tickmesh.analytics.quality import QualityConfig, judge_staleness
from tickmesh.analytics.results import Quality
from tickmesh.analytics.rows import timeframe_label
from tickmesh.analytics.store import AnalyticsStore, RangeQuery, ReplayKey
from tickmesh.core.errors import InvalidArgument, NotFound, ResourceExhausted
from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.core.protowire import embedded
from tickmesh.core.replay import (
    DEFAULT_PAGE_SIZE,
    ReplayError,
    ReplaySession,
    first_start,
    raw_response_methods,
    replay_plan,
)
from tickmesh.core.sharding import Shard, check_owned
from tickmesh.core.timeframes import TIMEFRAMES, TimeframeSpec, from_proto
from tickmesh.v2 import analytics_service_pb2 as pb
from tickmesh.v2 import analytics_service_pb2_grpc, market_pb2, replay_pb2

MAX_LIMIT = 5000
DEFAULT_INDICATOR_LIMIT = 500
DEFAULT_FEATURE_LIMIT = 1
REPLAY_PAGE_ROWS = 1000
# Replayed updates remembered so a live copy of the same commit is not sent twice; commits
# that race the replay touch its newest rows, which are the ones remembered.
_REMEMBERED_REPLAY = 50_000
MAX_SUBSCRIBE_BATCH = 1000
_UPDATES_FIELD = pb.AnalyticsServiceSubscribeResponse.UPDATES_FIELD_NUMBER

UpdateKey = tuple[InstrumentId, int, int]

# Subscribe and Replay send bytes serialized once at commit (the log's bytes), as they are.
add_analytics_service = raw_response_methods(
    analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server, "Subscribe", "Replay"
)


def analytics_registration(servicer: AnalyticsServicer) -> ServiceRegistration:
    """The gRPC registration of an AnalyticsServicer (raw-bytes Subscribe and Replay)."""
    return ServiceRegistration("tickmesh.v2.AnalyticsService", add_analytics_service, servicer)


def _timeframe(value: int) -> TimeframeSpec:
    try:
        return from_proto(value)
    except ValueError:
        labels = ", ".join(f"{tf.label}={tf.proto}" for tf in TIMEFRAMES)
        raise InvalidArgument(f"timeframe: {value} is not one of {labels}") from None


def instrument_field(message: market_pb2.Instrument, field: str) -> InstrumentId:
    """The instrument of a request field; InvalidArgument naming `field` when unset or bad."""
    if not message.symbol and message.exchange == market_pb2.EXCHANGE_UNSPECIFIED:
        raise InvalidArgument(f"{field}: required (exchange and symbol)")
    try:
        return InstrumentId.from_proto(message)
    except InstrumentError as error:
        raise InvalidArgument(f"{field}: {error}") from None


def instruments_field(
    messages: Sequence[market_pb2.Instrument], field: str
) -> frozenset[InstrumentId]:
    """The instruments of a repeated request field; InvalidArgument naming the bad element."""
    return frozenset(
        instrument_field(message, f"{field}[{index}]") for index, message in enumerate(messages)
    )


def range_query(
    instrument: InstrumentId,
    timeframe: int,
    start_ns: int,
    end_ns: int,
    limit: int,
    default_limit: int,
    as_of_ns: int | None = None,
) -> RangeQuery:
    """Validate a range request; InvalidArgument names the first bad field."""
    spec = _timeframe(timeframe)
    _check_as_of(as_of_ns)
    if start_ns < 0:
        raise InvalidArgument(f"start_time_ns: must be >= 0, got {start_ns}")
    if end_ns < 0:
        raise InvalidArgument(f"end_time_ns: must be >= 0, got {end_ns}")
    if end_ns and end_ns <= start_ns:
        raise InvalidArgument(
            f"end_time_ns: must be after start_time_ns ({start_ns}), got {end_ns}"
        )
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidArgument(
            f"limit: must be 1..{MAX_LIMIT} (0 means {default_limit}), got {limit}"
        )
    return RangeQuery(instrument, spec.label, start_ns, end_ns, limit or default_limit, as_of_ns)


def _check_as_of(as_of_ns: int | None) -> None:
    if as_of_ns is not None and as_of_ns < 0:
        raise InvalidArgument(f"as_of_ns: must be >= 0 (Unix epoch nanoseconds), got {as_of_ns}")


def _as_of(request: Any) -> int | None:
    """A request's as_of_ns, None when unset (answer as of now)."""
    return int(request.as_of_ns) if request.HasField("as_of_ns") else None


def _comparable(message: bytes) -> bytes:
    """A live message without its commit stamp, to compare with one rebuilt from stored rows."""
    parsed = pb.AnalyticsServiceSubscribeResponse.FromString(message)
    parsed.ClearField("bar_revision")
    parsed.ClearField("committed_at_ns")
    return parsed.SerializeToString(deterministic=True)


class AnalyticsServicer(analytics_service_pb2_grpc.AnalyticsServiceServicer):
    """Serves what the consumer stored; live updates come from the hub after each commit."""

    def __init__(
        self,
        store: AnalyticsStore,
        hub: AnalyticsHub,
        metrics: AnalyticsMetrics,
        quality_config: QualityConfig | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        replay_page_size: int = DEFAULT_PAGE_SIZE,
        shard: Shard | None = None,
    ) -> None:
        self._store = store
        # Reads and replays come from the shared database, so any shard answers them; live
        # updates only from the shard that computes them.
        self._shard = shard or Shard()
        self._replay_page_size = replay_page_size
        self._hub = hub
        self._metrics = metrics
        self._quality_config = quality_config or QualityConfig()
        self._clock_ns = clock_ns

    async def GetIndicators(
        self, request: pb.GetIndicatorsRequest, context: aio.ServicerContext
    ) -> pb.GetIndicatorsResponse:
        """Indicator rows of one instrument and timeframe, oldest first."""
        query = range_query(
            instrument_field(request.instrument, "instrument"),
            request.timeframe,
            request.start_time_ns,
            request.end_time_ns,
            request.limit,
            DEFAULT_INDICATOR_LIMIT,
            _as_of(request),
        )
        rows = await self._store.fetch_indicators(query)
        return pb.GetIndicatorsResponse(rows=[row.to_proto() for row in rows])

    async def GetFeatures(
        self, request: pb.GetFeaturesRequest, context: aio.ServicerContext
    ) -> pb.GetFeaturesResponse:
        """Feature rows of one instrument and timeframe, oldest first."""
        query = range_query(
            instrument_field(request.instrument, "instrument"),
            request.timeframe,
            request.start_time_ns,
            request.end_time_ns,
            request.limit,
            DEFAULT_FEATURE_LIMIT,
            _as_of(request),
        )
        rows = await self._store.fetch_features(query)
        return pb.GetFeaturesResponse(rows=[row.to_proto() for row in rows])

    async def GetQuality(
        self, request: pb.GetQualityRequest, context: aio.ServicerContext
    ) -> pb.GetQualityResponse:
        """The latest quality assessment (stored by as_of_ns if set), its staleness judged then;
        NOT_FOUND before the first.

        Staleness runs on the stream's clock (see tickmesh.analytics.quality.monitor): a stream
        whose bars stopped arriving is stale, a replay of old data is not.
        """
        instrument = instrument_field(request.instrument, "instrument")
        spec = _timeframe(request.timeframe)
        as_of_ns = _as_of(request)
        _check_as_of(as_of_ns)
        quality = await self._store.latest_quality(instrument, spec.label, as_of_ns)
        if quality is None:
            when = "yet" if as_of_ns is None else f"as of {as_of_ns}"
            raise NotFound(f"no quality assessment {when} for {instrument} {spec.label}")
        now_ns = self._clock_ns() if as_of_ns is None else as_of_ns
        judged = judge_staleness(quality, quality.received_ns, now_ns, spec, self._quality_config)
        return pb.GetQualityResponse(quality=judged.to_proto())

    async def Subscribe(  # type: ignore[override]  # raw bytes, see add_analytics_service
        self,
        request: pb.AnalyticsServiceSubscribeRequest,
        context: aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        """Replay stored updates after the resume point (if any), then stream live ones.

        Live updates go out as the bytes serialized at commit, the same Replay sends later. A
        shard streams only the instruments it owns: FAILED_PRECONDITION names the owner of
        another's; no instruments means every one of this shard's.
        """
        instruments = instruments_field(request.instruments, "instruments")
        check_owned(self._shard, sorted(instruments), "analytics")
        timeframes = [_timeframe(value) for value in request.timeframes]
        update_filter = UpdateFilter(instruments, frozenset(tf.proto for tf in timeframes))
        # Subscribe before reading storage, so nothing committed meanwhile is missed.
        subscription = self._hub.subscribe(update_filter)
        self._metrics.subscribers.set(self._hub.subscriber_count)
        replayed: OrderedDict[UpdateKey, bytes] = OrderedDict()
        batch = min(max(1, request.max_batch), MAX_SUBSCRIBE_BATCH)
        try:
            if request.HasField("resume_after_open_time_ns"):
                labels = [tf.label for tf in timeframes]
                # Keyset start just past the resume point: rows at a later microsecond (the
                # database's precision) sort after an empty venue.
                resume_us = request.resume_after_open_time_ns // 1000 + 1
                after: ReplayKey = (resume_us * 1000, "", "", "")
                pending: list[bytes] = []
                async for key, message in self._replay(after, sorted(instruments), labels):
                    encoded = message.SerializeToString(deterministic=True)
                    replayed[key] = encoded
                    if len(replayed) > _REMEMBERED_REPLAY:
                        replayed.popitem(last=False)
                    pending.append(encoded)
                    if len(pending) == batch:
                        for response in _responses(pending, batch):
                            yield response
                        pending = []
                for response in _responses(pending, batch):
                    yield response
            while True:
                try:
                    updates = await subscription.next_items()
                except SubscriberOverflowError as error:
                    raise ResourceExhausted(
                        f"{error}; resume from the last open time received"
                    ) from None
                live: list[bytes] = []
                for update in updates:
                    if replayed:
                        key = (update.instrument, update.timeframe, update.open_time_ns)
                        stored = replayed.get(key)
                        if stored is not None and stored == _comparable(update.message):
                            del replayed[key]
                            continue
                    live.append(update.message)
                for response in _responses(live, batch):
                    yield response
        finally:
            self._hub.unsubscribe(subscription)
            self._metrics.subscribers.set(self._hub.subscriber_count)

    async def Replay(  # type: ignore[override]  # raw bytes, see add_analytics_service
        self,
        request_iterator: AsyncIterator[replay_pb2.ReplayRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        """The live stream's updates of a commit-time range, byte for byte, paced and steered.

        INVALID_ARGUMENT for a bad start (range, speed, max_batch > 1, instruments, timeframes)
        or a bad control message. A client that stops reading stops the replay (flow control).
        """
        try:
            start = await first_start(request_iterator)
            plan = replay_plan(start, self._clock_ns(), batches=False)
        except ReplayError as error:
            raise InvalidArgument(str(error)) from None
        instruments = instruments_field(start.instruments, "start.instruments")
        labels = [_timeframe(value).label for value in start.timeframes]
        log = UpdateLogReplay(
            self._store.pool, sorted(instruments), labels, self._metrics.replay_pages
        )
        session = ReplaySession(log, plan, _only_message, page_size=self._replay_page_size)
        self._metrics.replays.inc()
        # A call that ends while a send waits leaves this generator suspended (see
        # ReplaySession.abandon): the session lets go of the request stream at once.
        context.add_done_callback(lambda _: session.abandon())
        try:
            async with contextlib.aclosing(session.responses(request_iterator)) as responses:
                async for response in responses:
                    yield response
        except ReplayError as error:
            raise InvalidArgument(str(error)) from None

    async def _replay(
        self, after: ReplayKey, instruments: list[InstrumentId], timeframes: list[str]
    ) -> AsyncIterator[tuple[UpdateKey, pb.AnalyticsServiceSubscribeResponse]]:
        while True:
            page = await self._store.fetch_updates_page(
                after, instruments, timeframes, REPLAY_PAGE_ROWS
            )
            if not page:
                return
            first_ns = page[0][0].open_time_ns
            last_ns = page[-1][0].open_time_ns
            longest = max(tf.duration_ns for tf in TIMEFRAMES)
            qualities = await self._store.fetch_qualities(
                instruments, timeframes, first_ns, last_ns + longest
            )
            by_time: dict[UpdateKey, Quality] = {
                (q.instrument, q.timeframe, q.time_ns): q for q in qualities
            }
            for indicators, features in page:
                end_ns = indicators.open_time_ns + from_proto(indicators.timeframe).duration_ns
                quality = by_time.get((indicators.instrument, indicators.timeframe, end_ns))
                update = AnalyticsUpdate(
                    indicators.instrument,
                    indicators.timeframe,
                    indicators.open_time_ns,
                    indicators,
                    features,
                    quality,
                )
                yield (update.instrument, update.timeframe, update.open_time_ns), update.to_proto()
            last = page[-1][0]
            after = (
                last.open_time_ns,
                last.instrument.venue,
                last.instrument.symbol,
                timeframe_label(last.timeframe),
            )


def _only_message(messages: Sequence[bytes]) -> bytes:
    """A replay response: one logged update (no batches), exactly as live Subscribe sent it."""
    return messages[0]


def _responses(messages: list[bytes], batch: int) -> Iterator[bytes]:
    """Serialized updates as Subscribe responses: one a response, or up to `batch` embedded in
    `updates` (the bytes as they are: a batch costs no re-encoding)."""
    if batch == 1:
        yield from messages
        return
    for start in range(0, len(messages), batch):
        yield embedded(_UPDATES_FIELD, messages[start : start + batch])
