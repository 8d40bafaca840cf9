"""AnalyticsEngine: every instrument and timeframe's InstrumentAnalytics, fed final bars, filling a pending batch.

Pure, no I/O: the consumer asks storage-free questions (is this stream warm?), fetches the
history it needs over gRPC, and hands bars in; the engine collects the rows and live
updates of what it computed until the consumer commits them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tickmesh.analytics.bars import BarInput, bar_from_proto
from tickmesh.analytics.indicators import DEFAULT_CAPACITY
from tickmesh.analytics.pipeline import BarAnalytics, InstrumentAnalytics
from tickmesh.analytics.quality import QualityConfig
from tickmesh.analytics.results import Features, Indicators, Quality
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import NS_PER_MINUTE, TIMEFRAMES, from_proto
from tickmesh.v2 import analytics_service_pb2, market_pb2

StreamKey = tuple[InstrumentId, int]  # instrument, timeframe enum value

# Distinct instruments remembered by their proto fields; far more than a shard streams.
_REMEMBERED_INSTRUMENTS = 100_000


@dataclass(frozen=True, slots=True)
class AnalyticsUpdate:
    """One live update: a bar's indicators and features, and the quality after it (any may be absent)."""

    instrument: InstrumentId
    timeframe: int
    open_time_ns: int
    indicators: Indicators | None = None
    features: Features | None = None
    quality: Quality | None = None
    # The W3C context of the span that computed it (empty when not traced).
    trace_context: Mapping[str, str] = field(default_factory=dict)
    # The revision of the bar the values were computed from.
    bar_revision: int = 0

    def to_proto(
        self, committed_at_ns: int = 0
    ) -> analytics_service_pb2.AnalyticsServiceSubscribeResponse:
        """Return the AnalyticsService.Subscribe message, stamped with its commit time if given."""
        message = analytics_service_pb2.AnalyticsServiceSubscribeResponse(
            bar_revision=self.bar_revision, committed_at_ns=committed_at_ns
        )
        if self.indicators is not None:
            message.indicators.CopyFrom(self.indicators.to_proto())
        if self.features is not None:
            message.features.CopyFrom(self.features.to_proto())
        if self.quality is not None:
            message.quality.CopyFrom(self.quality.to_proto())
        if self.trace_context:
            message.trace_context.update(self.trace_context)
        return message


@dataclass
class PendingBatch:
    """What was computed since the last commit, and the change id it brings the consumer to."""

    indicators: list[Indicators] = field(default_factory=list)
    features: list[Features] = field(default_factory=list)
    qualities: list[Quality] = field(default_factory=list)
    updates: list[AnalyticsUpdate] = field(default_factory=list)
    # The bar revision of each entry of `indicators` (and `features`), in the same order.
    revisions: list[int] = field(default_factory=list)
    last_change_id: int | None = None
    bars: int = 0

    def is_empty(self) -> bool:
        """True when no bar was consumed since the last commit."""
        return self.bars == 0 and self.last_change_id is None

    def add(
        self,
        result: BarAnalytics,
        bar: market_pb2.Bar,
        trace_context: Mapping[str, str] | None = None,
    ) -> None:
        """Take one bar's results: rows to store, updates to publish (with `trace_context`), its change id."""
        traced = {} if trace_context is None else trace_context
        self.bars += 1
        self.indicators.extend(result.indicators)
        self.features.extend(result.features)
        revisions = result.revisions or (bar.revision,) * len(result.indicators)
        self.revisions.extend(revisions)
        self.qualities.append(result.quality)
        self.advance(bar.change_id)
        pairs = list(zip(result.indicators, result.features, strict=True))
        for index, (indicators, features) in enumerate(pairs):
            last = index == len(pairs) - 1
            self.updates.append(
                AnalyticsUpdate(
                    indicators.instrument,
                    indicators.timeframe,
                    indicators.open_time_ns,
                    indicators,
                    features,
                    result.quality if last else None,
                    traced,
                    revisions[index],
                )
            )
        if not pairs:
            self.updates.append(
                AnalyticsUpdate(
                    result.quality.instrument,
                    bar.timeframe,
                    bar.open_time_ns,
                    quality=result.quality,
                    trace_context=traced,
                    bar_revision=bar.revision,
                )
            )

    def add_qualities(self, qualities: Sequence[Quality]) -> None:
        """Take assessments made outside a bar of their own (rechecks): rows and quality updates."""
        for quality in qualities:
            self.qualities.append(quality)
            # Keyed like the update of the stream's newest bar, whose close is the assessment time.
            open_time_ns = quality.time_ns - from_proto(quality.timeframe).duration_ns
            self.updates.append(
                AnalyticsUpdate(
                    quality.instrument, quality.timeframe, open_time_ns, quality=quality
                )
            )

    def advance(self, change_id: int) -> None:
        """Move the resume point to `change_id` (a bar consumed without output moves it too)."""
        if change_id > 0 and (self.last_change_id is None or change_id > self.last_change_id):
            self.last_change_id = change_id


class AnalyticsEngine:
    """The in-memory analytics state of every instrument and timeframe this process has met."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        quality_config: QualityConfig | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._capacity = capacity
        self._quality_config = quality_config
        # Wall clock: when each bar was received, so staleness can be judged later (see quality).
        self._clock_ns = clock_ns
        self._streams: dict[StreamKey, InstrumentAnalytics] = {}
        # Each bar names its instrument by proto fields; one validated InstrumentId per pair.
        self._instruments: dict[tuple[int, str], InstrumentId] = {}
        # The assessment time of each stream: the end of the newest bar seen, so replaying the
        # same bars assesses at the same times (idempotent rows) whatever the wall clock says.
        self._assessed_ns: dict[StreamKey, int] = {}
        self._received_ns: dict[StreamKey, int] = {}
        self._rechecked: list[Quality] = []

    def __len__(self) -> int:
        return len(self._streams)

    def instrument_of(self, message: market_pb2.Bar) -> InstrumentId:
        """The bar's instrument; InstrumentError for an unspecified venue or a malformed symbol."""
        pair = (int(message.exchange), message.symbol)
        instrument = self._instruments.get(pair)
        if instrument is None:
            instrument = InstrumentId.from_proto(
                market_pb2.Instrument(exchange=message.exchange, symbol=message.symbol)
            )
            if len(self._instruments) >= _REMEMBERED_INSTRUMENTS:
                self._instruments.clear()
            self._instruments[pair] = instrument
        return instrument

    def key_of(self, message: market_pb2.Bar) -> StreamKey:
        """The stream a bar belongs to; InstrumentError as in `instrument_of`."""
        return self.instrument_of(message), int(message.timeframe)

    def knows(self, key: StreamKey) -> bool:
        """True once the stream has been warmed (or started fresh)."""
        return key in self._streams

    def starts_after(self, key: StreamKey, open_time_ns: int) -> bool:
        """True when the stream holds bars and the oldest it keeps opens after `open_time_ns`."""
        stream = self._streams.get(key)
        if stream is None or not len(stream.window.bars):
            return False
        return int(stream.window.bars.open_time[0]) > open_time_ns

    def warm(self, key: StreamKey, history: Sequence[BarInput] = ()) -> None:
        """(Re)start a stream, then feed it stored history (oldest first) without producing rows."""
        instrument, timeframe = key
        spec = from_proto(timeframe)
        self._streams[key] = InstrumentAnalytics(
            instrument, spec, self._capacity, self._quality_config
        )
        self._assessed_ns.pop(key, None)
        self.add_history(key, history)

    def forget(self, key: StreamKey) -> None:
        """Drop a stream (e.g. a warm-up that did not finish); it is warmed again when next met."""
        self._streams.pop(key, None)
        self._assessed_ns.pop(key, None)

    def add_history(self, key: StreamKey, history: Sequence[BarInput]) -> None:
        """Feed more stored history, newer than what the stream holds, without producing rows."""
        stream = self._streams[key]
        for bar in history:
            # Bars the bar service stored are final; quality sees them all, as it did live.
            stream.quality.observe(bar)
            stream.window.update(bar)
            stream.note_revision(bar)
        if history:
            self._assessed_ns[key] = history[-1].open_time_ns + stream.timeframe.duration_ns

    def process(self, message: market_pb2.Bar) -> BarAnalytics:
        """Feed one final bar of a warm stream; RevisionOutOfRangeError if it reaches past the ring."""
        key = self.key_of(message)
        instrument = key[0]
        stream = self._streams[key]
        duration = stream.timeframe.duration_ns
        end_ns = message.open_time_ns + duration
        assessed_ns = max(end_ns, self._assessed_ns.get(key, end_ns))
        self._assessed_ns[key] = assessed_ns
        minute_bars: Sequence[BarInput] = ()
        if duration > NS_PER_MINUTE:
            minutes = self._streams.get((instrument, market_pb2.TIMEFRAME_1M))
            if minutes is not None:
                minute_bars = minutes.minute_bars_between(message.open_time_ns, end_ns)
        result = stream.on_bar(bar_from_proto(message), assessed_ns, minute_bars=minute_bars)
        received_ns = self._clock_ns()
        self._received_ns[key] = received_ns
        if duration == NS_PER_MINUTE:
            self._recheck_higher(instrument, stream, message.open_time_ns, message.revision > 0)
        return replace(result, quality=replace(result.quality, received_ns=received_ns))

    def _recheck_higher(
        self, instrument: InstrumentId, minutes: InstrumentAnalytics, minute_ns: int, revised: bool
    ) -> None:
        """Recheck the higher-timeframe bars this 1m bar completes or revises against it.

        Change ids order a commit's bars by timeframe label, so a 15m, 1h or 1d bar can arrive
        before the 1m bar that completes it (not yet comparable) or, on a revision, before the
        revised 1m bar (compared with the old one). Rechecked streams get a new assessment at
        their newest time, in `take_rechecked`.
        """
        for spec in TIMEFRAMES[1:]:
            key = (instrument, spec.proto)
            stream = self._streams.get(key)
            bucket = minute_ns - minute_ns % spec.duration_ns
            end_ns = bucket + spec.duration_ns
            if stream is None or key not in self._assessed_ns:
                continue
            if not revised and minute_ns + NS_PER_MINUTE != end_ns:
                continue
            bars = stream.window.bars
            index = bars.index_at_or_after(bucket)
            if index == len(bars) or int(bars.open_time[index]) != bucket:
                continue
            minute_bars = minutes.minute_bars_between(bucket, end_ns)
            if stream.quality.recheck_cross(bars.bar(index), minute_bars):
                quality = stream.quality.assess(self._assessed_ns[key])
                received = self._received_ns.get(key)
                self._rechecked.append(replace(quality, received_ns=received))

    def take_rechecked(self) -> list[Quality]:
        """Return the assessments changed by rechecks since the last call (to store and publish)."""
        rechecked, self._rechecked = self._rechecked, []
        return rechecked
