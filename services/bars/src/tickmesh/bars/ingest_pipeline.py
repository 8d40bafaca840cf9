"""Exactly-once ingest: apply batches to the engine, group-commit, then acknowledge.

A batch is applied to the in-memory engine at once. Every commit interval, the bars that
became final, the state of every changed symbol and the applied sequence of every stream
are written in ONE transaction; only after it commits are the sequences acknowledged and
the bars published. A crash loses only uncommitted work, which the collector resends
(unacknowledged batches) and the restored engine state then applies exactly once.

Tracing: each applied batch gets a "bars.apply_batch" span, a child of the collector's batch
span (the batch's trace_context), and each commit a "bars.commit" span linking the batches it
made durable; published bars continue their batch's trace (see batch_traces).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context

from tickmesh.bars import saved_state
from tickmesh.bars.bar_cache import BarCache
from tickmesh.bars.bar_metrics import BarMetrics
from tickmesh.bars.bar_rows import ns_to_datetime
from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.batch_traces import BarTraces, BatchTraces, stamp_bars
from tickmesh.bars.batch_validation import CheckedBatch, check_batch
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.forming_bars import FormingBar
from tickmesh.bars.forming_throttle import FormingThrottle
from tickmesh.bars.history_lane import HistoryLane
from tickmesh.bars.results import BatchResult
from tickmesh.bars.store import BarStore, Commit
from tickmesh.bars.subscriptions import BarHub
from tickmesh.bars.trades import QuarantineReason, SourceBar, TradeRun
from tickmesh.core.decimals import to_decimal
from tickmesh.core.exchanges import exchange_label
from tickmesh.core.long_lived import collection_paused
from tickmesh.core.periodic import PeriodicTask
from tickmesh.core.sharding import Shard
from tickmesh.core.tracing import get_tracer, message_span
from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)


# Forming bars are looked at this often; each symbol and timeframe is still sent at most once
# per forming interval (250 ms), but the first change after a quiet interval goes out at once.
FORMING_TICK_SECONDS = 0.01
# A database that is down is retried with exponential backoff up to this interval.
COMMIT_RETRY_MAX_SECONDS = 5.0

AckQueue = asyncio.Queue[tuple[str, int]]  # (stream id, cumulative durable sequence)


@dataclass
class StreamState:
    """What the service knows of one collector stream."""

    applied: int = 0
    durable: int = 0
    listeners: set[AckQueue] = field(default_factory=set)


class IngestPipeline:
    """Owns the engine; the only writer of bars for this shard."""

    def __init__(
        self,
        engine: BarEngine,
        store: BarStore,
        cache: BarCache,
        hub: BarHub,
        metrics: BarMetrics,
        shard: Shard,
        commit_interval_seconds: float,
        forming_interval_seconds: float,
        clock_ns: Callable[[], int] = time.time_ns,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._engine = engine
        # Trades older than a live symbol's retained window (a backfill) are built here.
        self._history = HistoryLane(engine.config)
        self._store = store
        self._cache = cache
        self._hub = hub
        self._metrics = metrics
        self._shard = shard
        self._commit_interval = commit_interval_seconds
        self._forming = FormingThrottle[FormingBar](
            int(forming_interval_seconds * 1e9), key=FormingBar.key
        )
        self._clock_ns = clock_ns
        self._streams: dict[str, StreamState] = {}
        self._pending_updates: list[BarUpdate] = []
        self._pending_quarantine: list[tuple[object, ...]] = []
        self._dirty_streams: set[str] = set()
        self._failed_commit: Commit | None = None
        self._failed_updates: list[BarUpdate] = []
        self._commit_failures = 0
        self._retry_at = 0.0
        self._tasks: list[PeriodicTask] = []
        self._tracer = tracer if tracer is not None else get_tracer()
        self._traces = BatchTraces()
        self._failed_traces: BarTraces = {}

    async def start(self) -> None:
        """Restore the engine and stream sequences from PostgreSQL, then start the loops."""
        states, finals = await self._store.load_engine_state()
        self._engine.restore(states, finals, now_ns=self._clock_ns())
        self._history.restore(await self._store.load_history_state(), self._clock_ns())
        self._hub.newest_change_id = await self._store.newest_change_id()
        for stream_id, sequence in (await self._store.load_stream_sequences()).items():
            self._streams[stream_id] = StreamState(applied=sequence, durable=sequence)
        # Give the engine the wall clock before the first batch, so it can tell a live feed from
        # a replay of past trades by how far behind the clock their events are.
        self._pending_updates.extend(self._engine.advance(self._clock_ns()))
        log.info("restored %d symbols and %d ingest streams", len(states), len(self._streams))
        self._tasks = [
            PeriodicTask("group commit", self.commit, self._commit_interval, delay_first=True),
            PeriodicTask(
                "forming publish", self._publish_forming, FORMING_TICK_SECONDS, delay_first=True
            ),
        ]
        for task in self._tasks:
            task.start()

    async def stop(self) -> None:
        """Stop the loops after a last commit, so a clean stop leaves nothing unacknowledged."""
        for task in self._tasks:
            await task.stop()
        await self.commit()  # failures are logged, counted and left for the collector to resend

    def open_stream(self, stream_id: str, listener: AckQueue) -> None:
        """Route the acknowledgements of `stream_id` to `listener` (one per Publish call)."""
        self._streams.setdefault(stream_id, StreamState()).listeners.add(listener)

    def close_stream(self, stream_id: str, listener: AckQueue) -> None:
        """Stop routing acknowledgements to `listener`."""
        state = self._streams.get(stream_id)
        if state is not None:
            state.listeners.discard(listener)

    def has_unacked(self, stream_ids: set[str]) -> bool:
        """True while any of the streams has applied batches that are not durable yet."""
        return any(
            self._streams[s].applied > self._streams[s].durable
            for s in stream_ids
            if s in self._streams
        )

    def apply(self, batch: market_pb2.TradeBatch) -> None:
        """Apply one batch exactly once; a re-sent one is dropped and acknowledged when durable."""
        state = self._streams.setdefault(batch.stream_id, StreamState())
        if batch.sequence and batch.sequence <= state.applied:
            self._metrics.batches.labels(outcome="duplicate").inc()
            if batch.sequence <= state.durable:
                for listener in state.listeners:
                    listener.put_nowait((batch.stream_id, state.durable))
            return
        try:
            checked = check_batch(batch, self._shard)
        except Exception as error:
            self._metrics.batches.labels(outcome="rejected").inc()
            log.warning(
                "rejected batch %d of stream %s: %s", batch.sequence, batch.stream_id, error
            )
            raise
        if batch.sequence > state.applied + 1 and state.applied:
            log.warning(
                "stream %s jumped from sequence %d to %d",
                batch.stream_id,
                state.applied,
                batch.sequence,
            )
        with message_span(
            self._tracer,
            "bars.apply_batch",
            batch.trace_context,
            {
                "tickmesh.stream_id": checked.stream_id,
                "tickmesh.sequence": checked.sequence,
                "tickmesh.trade_count": checked.trade_count,
            },
            trace.SpanKind.CONSUMER,
        ) as span:
            updates = self._apply_checked(checked)
            self._traces.note(span.get_span_context(), checked, updates)
        state.applied = checked.sequence
        self._dirty_streams.add(checked.stream_id)
        self._metrics.batches.labels(outcome="applied").inc()

    def _apply_checked(self, checked: CheckedBatch) -> list[BarUpdate]:
        runs = []
        # A simple run's trades all lie in the live window (see simple_runs): no routing.
        simple = self._engine.apply_simple_runs(checked.runs)
        for run, simple_result in zip(checked.runs, simple, strict=True):
            if simple_result is not None:
                runs.append(simple_result)
                continue
            live, old = self._history.route(run, self._engine)
            if live is not None:
                runs.append(self._engine.apply_trades(live))
            if old is not None:
                runs.append(self._history.apply_trades(old, self._engine.clock_ns))
        source = self._engine.apply_source_bars(checked.source_bars)
        result = BatchResult(runs, source)
        self._pending_updates.extend(result.updates)
        self._record_fates(result)
        return result.updates

    def _record_fates(self, result: BatchResult) -> None:
        trades = self._metrics.trades
        runs = result.runs
        trades.labels(outcome="accepted").inc(sum(run.accepted for run in runs))
        trades.labels(outcome="duplicate").inc(sum(run.duplicates for run in runs))
        trades.labels(outcome="non_market").inc(sum(run.non_market for run in runs))
        trades.labels(outcome="too_late").inc(sum(run.too_late for run in runs))
        trades.labels(outcome="quarantined").inc(sum(run.quarantined for run in runs))
        for run in runs:
            if run.quarantined_trades is None and run.too_late_trades is None:
                continue
            exchange = exchange_label(run.exchange)
            if run.quarantined_trades is not None:
                q = run.quarantined_trades
                reasons = sorted({QuarantineReason(int(r)).name.lower() for r in q.reasons})
                log.warning(
                    "quarantined %d trades of %s:%s (%s), first id %d",
                    len(q.trades),
                    exchange,
                    run.symbol,
                    ", ".join(reasons),
                    int(q.trades.trade_ids[0]),
                )
                for i in range(len(q.trades)):
                    why = QuarantineReason(int(q.reasons[i])).name.lower()
                    self._pending_quarantine.append(_trade_row(exchange, q.trades, i, why))
            if run.too_late_trades is not None:
                late = run.too_late_trades
                for i in range(len(late)):
                    self._pending_quarantine.append(_trade_row(exchange, late, i, "too_late"))
        source = result.source_bars
        for bar in source.too_late:
            self._pending_quarantine.append(_source_row(bar, "too_late"))
        for bar, reason in source.quarantined:
            log.warning(
                "quarantined the source bar of %s:%s at %d: %s",
                exchange_label(bar.exchange),
                bar.symbol,
                bar.open_time_ns,
                reason.name.lower(),
            )
            self._pending_quarantine.append(_source_row(bar, reason.name.lower()))

    async def commit(self) -> None:
        """Make everything applied so far durable, then acknowledge and publish it."""
        if self._failed_commit is not None:
            if time.monotonic() < self._retry_at:
                return
            commit, updates = self._failed_commit, self._failed_updates
            traces = self._failed_traces
        else:
            # The heads die once encoded, before the build ends: no collection traverses them.
            with collection_paused():
                commit, updates = self._build_commit()
            traces = self._traces.take(updates)
        if commit.is_empty():
            return
        with self._tracer.start_as_current_span(
            "bars.commit",
            context=Context(),  # a trace of its own, linked to the batches it makes durable
            links=self._traces.take_links(),
            attributes={"tickmesh.bar_count": len(updates)},
        ):
            await self._commit_and_publish(commit, updates, traces)

    async def _commit_and_publish(
        self,
        commit: Commit,
        updates: list[BarUpdate],
        traces: BarTraces,
    ) -> None:
        try:
            bars = await self._store.commit(commit)
        except Exception as error:
            # Keep this commit and retry it first: later ones must not overtake it.
            self._failed_commit, self._failed_updates = commit, updates
            self._failed_traces = traces
            self._metrics.commit_failures.inc()
            self._commit_failures += 1
            delay = min(COMMIT_RETRY_MAX_SECONDS, self._commit_interval * 2**self._commit_failures)
            self._retry_at = time.monotonic() + delay
            log.error(
                "group commit failed (attempt %d), retrying in %.2fs: %s",
                self._commit_failures,
                delay,
                error,
            )
            return
        if self._commit_failures:
            log.info("group commit succeeded after %d failed attempts", self._commit_failures)
        self._failed_commit, self._failed_updates = None, []
        self._failed_traces = {}
        self._commit_failures = 0
        await self._after_commit(commit, updates, bars, traces)

    def _build_commit(self) -> tuple[Commit, list[BarUpdate]]:
        now_ns = self._clock_ns()
        updates = self._pending_updates + self._engine.advance(now_ns)
        updates += self._history.advance(now_ns, self._engine)
        self._pending_updates = []
        latest: dict[tuple[int, str, str, int], BarUpdate] = {}
        for update in updates:  # a bar finalised then revised within one interval: keep the last
            key = (update.exchange, update.symbol, update.timeframe.label)
            latest[(*key, update.open_time_ns // 1000)] = update
        heads, finals = self._engine.snapshot_changes()
        retention = self._engine.config.retention_ns
        commit = Commit(
            candles=list(latest.values()),
            engine_states=[
                (exchange_label(h["exchange"]), h["symbol"], saved_state.encode(h)) for h in heads
            ],
            engine_finals=[
                (exchange_label(exchange), symbol, label, int(row[0]), saved_state.encode(row))
                for exchange, symbol, label, row in finals
            ],
            engine_horizons={
                (exchange_label(h["exchange"]), h["symbol"]): h["frontier_ns"] - retention
                for h in heads
                if h["frontier_ns"] is not None
            },
            stream_sequences={sid: self._streams[sid].applied for sid in self._dirty_streams},
            quarantine=self._pending_quarantine,
            history_states=[
                (exchange_label(h["exchange"]), h["symbol"], saved_state.encode(h))
                for h in self._history.take_changed_heads()
            ],
        )
        self._dirty_streams = set()
        self._pending_quarantine = []
        return commit, list(latest.values())

    async def _after_commit(
        self,
        commit: Commit,
        updates: list[BarUpdate],
        bars: list[market_pb2.Bar],
        traces: BarTraces,
    ) -> None:
        # The bars as stored in bar_versions (change id and commit time set), so a replay of
        # this commit sends what subscribers get now; trace contexts are added below, to these
        # live copies only.
        bars = list(bars)
        bars.sort(key=lambda bar: bar.change_id)
        # The cache first: whoever learns of these bars (an ack, a subscriber) and then asks
        # GetBars must find them there.
        await self._cache.put(bars)
        stamp_bars(bars, traces)  # after the cache: only live subscribers get trace contexts
        for update in updates:
            kind = "revised" if update.revision else "final"
            self._metrics.bars.labels(kind=kind, timeframe=update.timeframe.label).inc()
        for stream_id, sequence in commit.stream_sequences.items():
            state = self._streams[stream_id]
            state.durable = max(state.durable, sequence)
            for listener in state.listeners:
                listener.put_nowait((stream_id, state.durable))
        self._metrics.unacked_streams.set(
            sum(1 for s in self._streams.values() if s.applied > s.durable)
        )
        self._forming.forget_final(bars)
        self._hub.publish_finals(bars)

    async def _publish_forming(self) -> None:
        self._forming.offer(self._engine.take_forming(self._hub.forming_wanted()))
        due = self._forming.make_due(time.monotonic_ns(), FormingBar.message)
        self._traces.stamp_forming(due)
        self._hub.publish_forming(due)


def _trade_row(exchange: str, run: TradeRun, index: int, reason: str) -> tuple[object, ...]:
    return (
        exchange,
        run.symbol,
        "trade",
        int(run.trade_ids[index]),
        to_decimal(int(run.prices[index]), run.price_scale),
        to_decimal(int(run.quantities[index]), run.quantity_scale),
        ns_to_datetime(int(run.event_time_ns[index])),
        reason,
    )


def _source_row(bar: SourceBar, reason: str) -> tuple[object, ...]:
    return (
        exchange_label(bar.exchange),
        bar.symbol,
        "source_bar",
        bar.open_time_ns,
        to_decimal(bar.close, bar.price_scale),
        to_decimal(bar.volume, bar.quantity_scale),
        ns_to_datetime(bar.open_time_ns),
        reason,
    )
