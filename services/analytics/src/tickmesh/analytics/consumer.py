"""BarConsumer: resumable consumption of BarService.Subscribe into the analytics engine.

On start it reads the change id of the last bar whose analytics are stored and subscribes
after it: the bar service replays what was persisted since, then goes live. An instrument and
timeframe met for the first time (or whose revision reaches past the kept bars) is warmed
from BarService.GetBars, never from `candles`, which the bar service owns. Stream errors
reconnect with backoff from the last stored change id. A bar without a valid instrument
(unspecified venue, malformed symbol) is counted, logged and skipped; nothing else is lost.

Each consumed final bar gets an "analytics.process_bar" span, a child of the bar's
trace_context (the bar service's batch span); the updates it produces carry its context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from grpc import aio
from opentelemetry import trace
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.analytics.bars import BarInput, bar_from_proto
from tickmesh.analytics.engine import AnalyticsEngine, StreamKey
from tickmesh.analytics.group_commit import GroupCommitter
from tickmesh.analytics.indicators import RevisionOutOfRangeError
from tickmesh.analytics.pipeline import BarAnalytics
from tickmesh.analytics.prewarm import PreWarmer
from tickmesh.analytics.warmup_prefetch import WarmupPrefetch
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.core.long_lived import BurstPause
from tickmesh.core.timeframes import from_proto
from tickmesh.core.tracing import get_tracer, inject_span_context, message_span
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

if TYPE_CHECKING:  # the async stub exists only in the generated .pyi
    from tickmesh.v2.bar_service_pb2_grpc import BarServiceAsyncStub

log = logging.getLogger(__name__)

# How many bars to process before giving other tasks (RPCs, the writer) a turn. Few: at a
# whole market's minute close each await of the writer's transaction (~30 of them) waited for
# the next turn, so with 32 bars (~6 ms) a turn a 70-bar commit took 340-550 ms, ran until the
# burst was computed, and the rest went in one 1,900-bar commit after it. A turn costs ~10 us.
YIELD_EVERY_BARS = 4
_GET_BARS_MAX_LIMIT = 5000
_REMEMBERED_REJECTIONS = 10_000
_WARM_CHUNK_BARS = 64
# Bars read off the stream ahead of processing (flow control holds the rest at the bar
# service), and warm-up fetches of the unseen streams among them in flight at once.
_READ_AHEAD_BARS = 1024
# Bars a stream response may hold: one bar a response made a whole market's minute close
# (2,000 finals published at once) trickle in over ~1 s (bench_whole_market's stage probe),
# the bar service's per-message cost, not this service's compute, setting the pace.
_STREAM_BATCH_BARS = 500
_WARMUPS_IN_FLIGHT = 16


class StreamEndedError(Exception):
    """The bar service ended the subscription without an error (e.g. it is shutting down)."""


@dataclass(frozen=True)
class ConsumerConfig:
    """How the consumer warms streams and backs off."""

    warmup_bars: int = 320
    reconnect_max_seconds: float = 5.0


class RejectionLog:
    """Logs each rejected bar once by its key, though replays after a restart may meet it again."""

    def __init__(self, remembered: int = _REMEMBERED_REJECTIONS) -> None:
        self._remembered = remembered
        self._seen: OrderedDict[tuple[int, str, int, int], None] = OrderedDict()

    def note(self, bar: market_pb2.Bar, reason: str) -> bool:
        """Log the rejection of `bar` unless its key was logged already; True when it logged."""
        key = (int(bar.exchange), bar.symbol, int(bar.timeframe), bar.open_time_ns)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        log.warning(
            "bar rejected for indicators",
            extra={
                "exchange": int(bar.exchange),
                "symbol": bar.symbol,
                "timeframe": from_proto(bar.timeframe).label,
                "open_time_ns": bar.open_time_ns,
                "revision": bar.revision,
                "reason": reason,
            },
        )
        return True


class BarConsumer:
    """Feeds final bars from the bar service into the engine and the group committer."""

    def __init__(
        self,
        channel: aio.Channel,
        engine: AnalyticsEngine,
        committer: GroupCommitter,
        metrics: AnalyticsMetrics,
        config: ConsumerConfig,
        tracer: trace.Tracer | None = None,
    ) -> None:
        # grpc is untyped here, so mypy cannot pick the stub's aio.Channel overload by itself.
        self._stub = cast("BarServiceAsyncStub", bar_service_pb2_grpc.BarServiceStub(channel))
        self._engine = engine
        # Bars older than a live stream's kept bars (a backfill of history) are computed in
        # streams of their own, so the live streams' windows are not rewound to the past.
        self._history = AnalyticsEngine(capacity=config.warmup_bars)
        self._committer = committer
        self._metrics = metrics
        self._config = config
        self._tracer = tracer if tracer is not None else get_tracer()
        self._since_yield = 0
        self._rejections = RejectionLog()
        self._prefetch = WarmupPrefetch(self._history_before, _WARMUPS_IN_FLIGHT)
        self._prewarm = PreWarmer(self._prefetch, self._engine.knows)
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Consume until cancelled: reconnect with backoff after each stream error."""
        while True:
            # A fresh backoff after a session that made progress; one growing backoff while none
            # does. Every RPC error is retried: the consumer must outlive any bar service trouble.
            retrying = AsyncRetrying(
                retry=retry_if_exception_type((aio.AioRpcError, StreamEndedError)),
                wait=wait_exponential_jitter(
                    multiplier=0.1, max=self._config.reconnect_max_seconds, jitter=0.1
                ),
                before_sleep=self._log_reconnect,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await self._session()

    def _log_reconnect(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        code = error.code().name if isinstance(error, aio.AioRpcError) else "ENDED"
        self._metrics.stream_reconnects.labels(code=code).inc()
        log.warning(
            "bar stream lost, reconnecting",
            extra={
                "code": code,
                "attempt": state.attempt_number,
                "resume_after_change_id": self._committer.stored_change_id,
            },
        )

    async def _session(self) -> None:
        """One subscription; returns after a stream error that followed progress (reconnect at once)."""
        # Without a stored point, resume from 0: every bar persisted before this service first
        # started gets its analytics too (no resume point would mean live only).
        request = bar_service_pb2.SubscribeRequest(
            include_forming=False,
            resume_after_change_id=self._committer.stored_change_id or 0,
            max_batch=_STREAM_BATCH_BARS,
        )
        progressed = False
        call = self._stub.Subscribe(request)
        # The reader runs ahead of processing so unseen streams' warm-ups are fetched meanwhile;
        # it ends with None (the stream ended) or the stream's error.
        ahead: asyncio.Queue[market_pb2.Bar | BaseException | None] = asyncio.Queue(
            _READ_AHEAD_BARS
        )
        reader = asyncio.create_task(self._read_ahead(call, ahead), name="bar-stream-reader")
        # A minute close's bars are computed with automatic collection paused: their rows die
        # at the group commits, untraversed (long_lived.BurstPause).
        burst = BurstPause()
        try:
            self.connected.set()
            while (item := await self._next(ahead)) is not None:
                if isinstance(item, BaseException):
                    raise item
                burst.follow(not ahead.empty())
                await self._consume(item)
                progressed = True
            raise StreamEndedError("the bar service ended the subscription")
        except (aio.AioRpcError, StreamEndedError) as error:
            if not progressed:
                raise
            code = error.code().name if isinstance(error, aio.AioRpcError) else "ENDED"
            self._metrics.stream_reconnects.labels(code=code).inc()
            log.warning("bar stream lost after progress, reconnecting", extra={"code": code})
        finally:
            burst.end()
            self.connected.clear()
            reader.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self._prefetch.cancel()
            self._prewarm.reset()
            # Resume exactly from what is stored: what was consumed is committed first.
            await self._committer.flush()

    async def _next(
        self, ahead: asyncio.Queue[market_pb2.Bar | BaseException | None]
    ) -> market_pb2.Bar | BaseException | None:
        """The next item read ahead; while there is none, streams are pre-warmed (prewarm.py)."""
        if not ahead.empty() or not self._prewarm.busy:
            return await ahead.get()
        getter = asyncio.ensure_future(ahead.get())
        try:
            while not getter.done():
                await self._apply_prewarms()
                if getter.done() or not self._prewarm.busy:
                    break
                changed = asyncio.ensure_future(self._prewarm.changed.wait())
                try:
                    await asyncio.wait({getter, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
            return await getter
        finally:
            getter.cancel()  # a no-op once it has its item

    async def _apply_prewarms(self) -> None:
        """Warm the streams whose pre-warm fetch finished, then start more fetches."""
        for key, before_ns in self._prewarm.finished():
            if self._engine.knows(key):
                self._prefetch.discard(key)
                continue
            try:
                earlier = await self._prefetch.take(key, before_ns)
            except Exception as error:  # its first bar fetches it again
                log.info("pre-warm failed", extra={"stream": str(key[0]), "error": str(error)})
                continue
            if not self._engine.knows(key):  # a bar may have warmed it meanwhile
                await self._warm_in_chunks(key, [bar_from_proto(b) for b in earlier])
                self._metrics.warmups.labels(reason="prewarm").inc()
        self._prewarm.top_up()

    async def _read_ahead(
        self,
        call: aio.UnaryStreamCall[
            bar_service_pb2.SubscribeRequest, bar_service_pb2.SubscribeResponse
        ],
        ahead: asyncio.Queue[market_pb2.Bar | BaseException | None],
    ) -> None:
        """Queue the stream's bars; ask for the warm-up history of each stream first seen."""
        try:
            async for response in call:
                # A batch in `bars`; one bar in `bar` from a bar service that does not batch.
                for bar in response.bars if len(response.bars) else (response.bar,):
                    if bar.final and not self._delivered_before(bar):
                        self._prefetch_if_unseen(bar)
                    await ahead.put(bar)
        except Exception as error:  # the consumer raises it in order, after the bars before it
            await ahead.put(error)
            return
        await ahead.put(None)

    def _delivered_before(self, bar: market_pb2.Bar) -> bool:
        """Delivered again after a reconnect: its rows are stored or pending."""
        stored = self._committer.stored_change_id
        pending = self._committer.batch.last_change_id
        return 0 < bar.change_id <= max(stored or 0, pending or 0)

    def _prefetch_if_unseen(self, bar: market_pb2.Bar) -> None:
        try:
            key = self._engine.key_of(bar)
        except InstrumentError:
            return  # rejected when its turn comes
        if not self._engine.knows(key):
            self._prefetch.request(key, bar.open_time_ns)

    async def _consume(self, bar: market_pb2.Bar) -> None:
        if not bar.final or self._delivered_before(bar):
            return
        try:
            key = self._engine.key_of(bar)
        except InstrumentError as error:
            self._reject_unidentified(bar, str(error))
            return
        with message_span(
            self._tracer,
            "analytics.process_bar",
            bar.trace_context,
            {
                "tickmesh.instrument": str(key[0]),
                "tickmesh.timeframe": int(bar.timeframe),
                "tickmesh.change_id": bar.change_id,
            },
            trace.SpanKind.CONSUMER,
        ) as span:
            await self._process(key, bar, span)
        self._since_yield += 1
        if self._since_yield >= YIELD_EVERY_BARS:
            self._since_yield = 0
            await asyncio.sleep(0)

    def _reject_unidentified(self, bar: market_pb2.Bar, reason: str) -> None:
        """Skip a bar whose instrument is invalid: counted, logged once, the resume point moves past it."""
        self._metrics.bars_rejected.inc()
        self._rejections.note(bar, f"instrument: {reason}")
        self._committer.batch.advance(bar.change_id)

    async def _process(self, key: StreamKey, bar: market_pb2.Bar, span: trace.Span) -> None:
        if not self._engine.knows(key):
            await self._warm(key, bar, "first_seen")
        started = time.perf_counter()
        try:
            # A first final bar older than all the live stream keeps is history (a backfill):
            # rewinding the live stream to it would recompute every kept bar once per such bar.
            if bar.revision == 0 and self._engine.starts_after(key, bar.open_time_ns):
                raise RevisionOutOfRangeError(f"{key[0]}: {bar.open_time_ns} precedes the stream")
            result = self._engine.process(bar)
        except RevisionOutOfRangeError:
            if bar.revision == 0:
                result = await self._process_history(key, bar)
            else:
                await self._warm(key, bar, "revision_out_of_range")
                started = time.perf_counter()
                result = self._engine.process(bar)
        self._metrics.bar_seconds.observe(time.perf_counter() - started)
        self._metrics.bars_consumed.inc()
        self._metrics.observe_quality(result.quality)
        rechecked = self._engine.take_rechecked() + self._history.take_rechecked()
        for quality in rechecked:
            self._metrics.observe_quality(quality)
        self._committer.batch.add_qualities(rechecked)
        if result.rejection is not None:
            self._note_rejection(bar, result)
        trace_context: dict[str, str] = {}
        inject_span_context(trace_context, span.get_span_context())
        self._committer.batch.add(result, bar, trace_context)
        self._prewarm.note_minute(key, bar.open_time_ns)
        await self._committer.after_bar()

    async def _process_history(self, key: StreamKey, bar: market_pb2.Bar) -> BarAnalytics:
        """A first final bar older than the live stream keeps: computed in the history stream.

        The history stream is warmed from the stored bars before the bar, like a live one, and
        then follows the backfill (oldest first); a bar it cannot follow warms it again.
        """
        if self._history.knows(key):
            with contextlib.suppress(RevisionOutOfRangeError):
                return self._history.process(bar)
        earlier = await self._get_bars(
            key[0], key[1], 0, bar.open_time_ns, self._config.warmup_bars
        )
        self._history.warm(key)
        history = [bar_from_proto(b) for b in earlier]
        for start in range(0, len(history), _WARM_CHUNK_BARS):
            await asyncio.sleep(0)
            self._history.add_history(key, history[start : start + _WARM_CHUNK_BARS])
        self._metrics.warmups.labels(reason="history").inc()
        return self._history.process(bar)

    def _note_rejection(self, bar: market_pb2.Bar, result: BarAnalytics) -> None:
        self._metrics.bars_rejected.inc()
        self._rejections.note(bar, result.rejection or "")

    async def _warm(self, key: StreamKey, bar: market_pb2.Bar, reason: str) -> None:
        """Rebuild a stream from the bar service's stored bars before `bar`.

        For a revision, the stored bars after it that the stream already delivered (smaller
        change ids) are kept too, so the revision recomputes them as it would have live.
        """
        instrument, timeframe = key
        earlier = await self._prefetch.take(key, bar.open_time_ns)
        history = [bar_from_proto(b) for b in earlier]
        if bar.revision > 0:
            later = await self._get_bars(
                instrument, timeframe, bar.open_time_ns + 1, 0, _GET_BARS_MAX_LIMIT
            )
            history.extend(bar_from_proto(b) for b in later if b.change_id < bar.change_id)
        await self._warm_in_chunks(key, history)
        self._metrics.warmups.labels(reason=reason).inc()

    async def _warm_in_chunks(self, key: StreamKey, history: list[BarInput]) -> None:
        # Warming costs ~25 µs a bar; chunks keep the loop free for RPCs and the writer.
        self._engine.warm(key)
        try:
            for start in range(0, len(history), _WARM_CHUNK_BARS):
                await asyncio.sleep(0)
                self._engine.add_history(key, history[start : start + _WARM_CHUNK_BARS])
        except BaseException:
            self._engine.forget(key)  # half warm would be known, and wrong, from now on
            raise

    async def _history_before(self, key: StreamKey, before_ns: int) -> list[market_pb2.Bar]:
        """The stored bars a stream is warmed from: up to warmup_bars opening before `before_ns`."""
        return await self._get_bars(key[0], key[1], 0, before_ns, self._config.warmup_bars)

    async def _get_bars(
        self, instrument: InstrumentId, timeframe: int, start_ns: int, end_ns: int, limit: int
    ) -> list[market_pb2.Bar]:
        response = await self._stub.GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=instrument.to_proto(),
                timeframe=market_pb2.Timeframe.ValueType(timeframe),
                start_time_ns=start_ns,
                end_time_ns=end_ns,
                limit=limit,
            ),
            timeout=30,
        )
        return list(response.bars)
