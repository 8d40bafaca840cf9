"""AnalyticsService: range queries over stored indicators and features, the latest quality, live updates."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence

from grpc import aio

from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.engine import AnalyticsUpdate
from tickmesh.analytics.hub import AnalyticsHub, SubscriberOverflowError, UpdateFilter
from tickmesh.analytics.quality import QualityConfig, judge_staleness
from tickmesh.analytics.results import Quality
from tickmesh.analytics.rows import timeframe_label
from tickmesh.analytics.store import AnalyticsStore, RangeQuery, ReplayKey
from tickmesh.core.errors import InvalidArgument, NotFound, ResourceExhausted
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.core.timeframes import TIMEFRAMES, TimeframeSpec, from_proto
from tickmesh.v2 import analytics_service_pb2 as pb
from tickmesh.v2 import analytics_service_pb2_grpc, market_pb2

MAX_LIMIT = 5000
DEFAULT_INDICATOR_LIMIT = 500
DEFAULT_FEATURE_LIMIT = 1
REPLAY_PAGE_ROWS = 1000
# Replayed updates remembered so a live copy of the same commit is not sent twice; commits
# that race the replay touch its newest rows, which are the ones remembered.
_REMEMBERED_REPLAY = 50_000

UpdateKey = tuple[InstrumentId, int, int]


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
) -> RangeQuery:
    """Validate a range request; InvalidArgument names the first bad field."""
    spec = _timeframe(timeframe)
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
    return RangeQuery(instrument, spec.label, start_ns, end_ns, limit or default_limit)


class AnalyticsServicer(analytics_service_pb2_grpc.AnalyticsServiceServicer):
    """Serves what the consumer stored; live updates come from the hub after each commit."""

    def __init__(
        self,
        store: AnalyticsStore,
        hub: AnalyticsHub,
        metrics: AnalyticsMetrics,
        quality_config: QualityConfig | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
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
        )
        rows = await self._store.fetch_features(query)
        return pb.GetFeaturesResponse(rows=[row.to_proto() for row in rows])

    async def GetQuality(
        self, request: pb.GetQualityRequest, context: aio.ServicerContext
    ) -> pb.GetQualityResponse:
        """The latest quality assessment, its staleness judged now; NOT_FOUND before the first.

        Staleness runs on the stream's clock (see tickmesh.analytics.quality.monitor): a stream
        whose bars stopped arriving is stale, a replay of old data is not.
        """
        instrument = instrument_field(request.instrument, "instrument")
        spec = _timeframe(request.timeframe)
        quality = await self._store.latest_quality(instrument, spec.label)
        if quality is None:
            raise NotFound(f"no quality assessment yet for {instrument} {spec.label}")
        judged = judge_staleness(
            quality, quality.received_ns, self._clock_ns(), spec, self._quality_config
        )
        return pb.GetQualityResponse(quality=judged.to_proto())

    async def Subscribe(
        self,
        request: pb.AnalyticsServiceSubscribeRequest,
        context: aio.ServicerContext,
    ) -> AsyncIterator[pb.AnalyticsServiceSubscribeResponse]:
        """Replay stored updates after the resume point (if any), then stream live ones."""
        instruments = instruments_field(request.instruments, "instruments")
        timeframes = [_timeframe(value) for value in request.timeframes]
        update_filter = UpdateFilter(instruments, frozenset(tf.proto for tf in timeframes))
        # Subscribe before reading storage, so nothing committed meanwhile is missed.
        subscription = self._hub.subscribe(update_filter)
        self._metrics.subscribers.set(self._hub.subscriber_count)
        replayed: OrderedDict[UpdateKey, bytes] = OrderedDict()
        try:
            if request.HasField("resume_after_open_time_ns"):
                labels = [tf.label for tf in timeframes]
                # Keyset start just past the resume point: rows at a later microsecond (the
                # database's precision) sort after an empty venue.
                resume_us = request.resume_after_open_time_ns // 1000 + 1
                after: ReplayKey = (resume_us * 1000, "", "", "")
                async for key, message in self._replay(after, sorted(instruments), labels):
                    replayed[key] = message.SerializeToString(deterministic=True)
                    if len(replayed) > _REMEMBERED_REPLAY:
                        replayed.popitem(last=False)
                    yield message
            while True:
                try:
                    updates = await subscription.next_items()
                except SubscriberOverflowError as error:
                    raise ResourceExhausted(
                        f"{error}; resume from the last open time received"
                    ) from None
                for update in updates:
                    message = update.to_proto()
                    key = (update.instrument, update.timeframe, update.open_time_ns)
                    if replayed.get(key) == message.SerializeToString(deterministic=True):
                        del replayed[key]
                        continue
                    yield message
        finally:
            self._hub.unsubscribe(subscription)
            self._metrics.subscribers.set(self._hub.subscriber_count)

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
