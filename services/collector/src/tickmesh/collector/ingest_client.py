"""The acknowledged ingest stream to the bar service (IngestService.Publish).

Sources hand trade runs and source bars to ``submit``; a sender cuts them into numbered
batches (up to ``max_batch_trades`` or ``max_batch_delay_s``), writes them on one
bidirectional call and keeps each batch until the bar service acknowledges it as durable.
When the call fails, the client reconnects with exponential backoff and jitter (tenacity)
and resends every unacknowledged batch, in order, before anything new; the bar service
drops what it had already applied. The buffer is bounded: when unsent plus unacknowledged
trades exceed ``max_buffered_trades`` the oldest UNSENT trades are dropped and reported to
``on_dropped`` (the sources record them as id gaps that the REST backfill refills once the
bar service is reachable), so the process's memory stays bounded and nothing is lost.

Each batch gets a "collector.publish_batch" span, from forming to acknowledgement, whose W3C
context travels in the batch's trace_context (a resend is the same message, so it keeps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc
from grpc import aio
from opentelemetry import trace
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential_jitter

from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_state import MemorySequenceStore, SequenceStore
from tickmesh.collector.trade_runs import slice_run
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.ingest_protocol import REJECTED_SEQUENCE_KEY
from tickmesh.core.tracing import get_tracer, inject_span_context
from tickmesh.v2 import ingest_service_pb2, ingest_service_pb2_grpc, market_pb2

log = logging.getLogger(__name__)

DropHandler = Callable[[list[market_pb2.SymbolTrades], list[market_pb2.SourceBar]], None]
AckHandler = Callable[[list[market_pb2.TradeBatch]], None]
RejectHandler = Callable[[market_pb2.TradeBatch, str], Awaitable[None]]
# Statuses for a batch the bar service will never take: set it aside rather than resend it.
REJECTIONS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
ChannelFactory = Callable[[str], aio.Channel]


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Where to publish, under which stream id, and the batching and buffer bounds."""

    address: str
    stream_id: str
    max_batch_trades: int = 1000
    max_batch_delay_s: float = 0.05
    max_buffered_trades: int = 1_000_000
    max_in_flight_batches: int = 256
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0
    connect_timeout_s: float = 5.0


@dataclass(slots=True)
class _Pending:
    run: market_pb2.SymbolTrades | None
    bar: market_pb2.SourceBar | None
    submitted: float


@dataclass(slots=True)
class _Sent:
    request: ingest_service_pb2.PublishRequest
    trades: int
    submitted: float
    span: trace.Span


class IngestUnavailable(Exception):
    """The ingest call failed or ended; the client reconnects and resends."""


class _HealthySessionEnded(Exception):
    """A session that had been acknowledged ended: reconnect with a fresh backoff."""


class IngestClient:
    """One collector stream of numbered, acknowledged batches to the bar service."""

    def __init__(
        self,
        config: IngestConfig,
        metrics: CollectorMetrics,
        store: SequenceStore | None = None,
        on_dropped: DropHandler | None = None,
        on_acked: AckHandler | None = None,
        channel_factory: ChannelFactory = open_channel,
        on_rejected: RejectHandler | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.config = config
        self._metrics = metrics
        self._store = store if store is not None else MemorySequenceStore()
        self.on_dropped = on_dropped
        self.on_acked = on_acked
        self.on_rejected = on_rejected
        self._channel_factory = channel_factory
        self._tracer = tracer if tracer is not None else get_tracer()
        self._pending: deque[_Pending] = deque()
        self._pending_trades = 0
        self._unacked: deque[_Sent] = deque()
        self._unacked_trades = 0
        self._next_sequence = 0
        self._acked_sequence = 0
        self._submitted = asyncio.Event()
        self._acked = asyncio.Event()
        self._connected = asyncio.Event()
        self.dropped_trades = 0
        # One warning per overflow episode, not one per dropped run.
        self._dropping = False

    @property
    def connected(self) -> bool:
        """Whether the ingest call to the bar service is open."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until the ingest call is open."""
        await self._connected.wait()

    @property
    def buffered_trades(self) -> int:
        """Trades held: unsent plus sent and unacknowledged."""
        return self._pending_trades + self._unacked_trades

    @property
    def unacked_batches(self) -> int:
        """Batches sent and not acknowledged yet."""
        return len(self._unacked)

    @property
    def acked_sequence(self) -> int:
        """The highest sequence the bar service acknowledged in this process."""
        return self._acked_sequence

    def lowest_buffered_ids(self) -> dict[tuple[int, str], int]:
        """The lowest trade id per (exchange, symbol) still unsent or unacknowledged."""
        runs = [run for sent in self._unacked for run in sent.request.batch.trades]
        runs += [item.run for item in self._pending if item.run is not None]
        lowest: dict[tuple[int, str], int] = {}
        for run in runs:
            if not len(run.trade_ids):
                continue
            key = (run.exchange, run.symbol)
            low = min(run.trade_ids)
            if key not in lowest or low < lowest[key]:
                lowest[key] = low
        return lowest

    def room(self) -> int:
        """Trades that can be submitted now without dropping any."""
        return max(0, self.config.max_buffered_trades - self.buffered_trades)

    def submit(
        self,
        runs: Iterable[market_pb2.SymbolTrades] = (),
        bars: Iterable[market_pb2.SourceBar] = (),
    ) -> None:
        """Queue trade runs and source bars for publishing; never blocks (drops oldest unsent)."""
        now = time.monotonic()
        for run in runs:
            if len(run.trade_ids):
                self._pending.append(_Pending(run, None, now))
                self._pending_trades += len(run.trade_ids)
        for bar in bars:
            self._pending.append(_Pending(None, bar, now))
        self._submitted.set()
        if self.buffered_trades > self.config.max_buffered_trades:
            self._drop_oldest_unsent()
        self._update_gauges()

    async def wait_room(self, trades: int) -> None:
        """Wait until `trades` more fit in the buffer (backfill and imports never drop)."""
        wanted = min(trades, self.config.max_buffered_trades)
        while self.room() < wanted:
            self._acked.clear()
            await self._acked.wait()

    async def flush(self) -> None:
        """Wait until everything submitted so far is acknowledged (wrap in asyncio.timeout)."""
        while self._pending or self._unacked:
            self._acked.clear()
            await self._acked.wait()

    async def run(self) -> None:
        """Publish until cancelled, reconnecting with backoff and resending what is unacked."""
        self._next_sequence = await self._store.load(self.config.stream_id) + 1
        self._acked_sequence = self._next_sequence - 1
        while True:
            retrying = AsyncRetrying(
                wait=wait_exponential_jitter(
                    multiplier=self.config.reconnect_initial_s, max=self.config.reconnect_max_s
                ),
                retry=retry_if_exception_type(IngestUnavailable),
                stop=stop_never,
                before_sleep=self._before_retry,
                reraise=True,
            )
            with contextlib.suppress(_HealthySessionEnded):
                async for attempt in retrying:
                    with attempt:
                        await self._session()
            self._metrics.ingest_reconnects.inc()

    def _before_retry(self, state: object) -> None:
        self._metrics.ingest_reconnects.inc()

    async def _session(self) -> None:
        channel = self._channel_factory(self.config.address)
        acked_before = self._acked_sequence
        try:
            stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
            call = stub.Publish()
            async with asyncio.timeout(self.config.connect_timeout_s):
                await call.wait_for_connection()
            self._connected.set()
            reader = asyncio.create_task(self._read_acks(call), name="ingest-acks")
            sender = asyncio.create_task(self._send(call), name="ingest-send")
            try:
                done, _ = await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                raise IngestUnavailable("the bar service ended the ingest stream")
            finally:
                for task in (reader, sender):
                    task.cancel()
                await asyncio.gather(reader, sender, return_exceptions=True)
                call.cancel()
        except (aio.AioRpcError, TimeoutError, ConnectionError, asyncio.InvalidStateError) as error:
            # InvalidStateError: a write raced the end of the call (the bar service went away
            # between two writes); it is a failed session like any other, not a client bug.
            code = error.code() if isinstance(error, aio.AioRpcError) else None
            if isinstance(error, aio.AioRpcError) and code in REJECTIONS:
                await self._set_aside(error)
            else:
                log.warning("ingest stream to %s failed: %s", self.config.address, code or error)
            raise IngestUnavailable(str(error)) from error
        finally:
            self._connected.clear()
            await channel.close()
        if self._acked_sequence > acked_before:
            raise _HealthySessionEnded

    async def _send(self, call: aio.StreamStreamCall[ingest_service_pb2.PublishRequest, ingest_service_pb2.PublishResponse]) -> None:  # fmt: skip
        # Everything unacknowledged goes first, in order, so sequences stay gap-free.
        for sent in list(self._unacked):
            await call.write(sent.request)
            self._metrics.ingest_batches.labels(outcome="resent").inc()
        while True:
            await self._wait_sendable()
            formed = self._form_batches()
            if not formed:
                continue
            await self._store.reserve(self.config.stream_id, formed[-1].request.batch.sequence)
            for sent in formed:
                await call.write(sent.request)
                self._metrics.ingest_batches.labels(outcome="sent").inc()

    async def _wait_sendable(self) -> None:
        config = self.config
        while True:
            if len(self._unacked) >= config.max_in_flight_batches:
                self._acked.clear()
                await self._acked.wait()
                continue
            if self._pending:
                age = time.monotonic() - self._pending[0].submitted
                if self._pending_trades >= config.max_batch_trades or age >= (
                    config.max_batch_delay_s
                ):
                    return
                timeout = config.max_batch_delay_s - age
            else:
                timeout = None
            self._submitted.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._submitted.wait()

    def _form_batches(self) -> list[_Sent]:
        formed: list[_Sent] = []
        limit = self.config.max_batch_trades
        while self._pending and len(self._unacked) < self.config.max_in_flight_batches:
            runs: list[market_pb2.SymbolTrades] = []
            bars: list[market_pb2.SourceBar] = []
            count = 0
            oldest = self._pending[0].submitted
            while self._pending and count < limit:
                item = self._pending[0]
                if item.bar is not None:
                    bars.append(item.bar)
                    self._pending.popleft()
                    continue
                assert item.run is not None
                size = len(item.run.trade_ids)
                if count + size <= limit:
                    runs.append(item.run)
                    self._pending.popleft()
                    count += size
                    continue
                # Split the run: its head fills this batch, its tail stays first in line.
                take = limit - count
                runs.append(slice_run(item.run, 0, take))
                item.run = slice_run(item.run, take, size)
                count += take
            self._pending_trades -= count
            batch = market_pb2.TradeBatch(
                stream_id=self.config.stream_id,
                sequence=self._next_sequence,
                trades=runs,
                source_bars=bars,
            )
            self._next_sequence += 1
            span = self._tracer.start_span(
                "collector.publish_batch",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "tickmesh.stream_id": batch.stream_id,
                    "tickmesh.sequence": batch.sequence,
                    "tickmesh.trade_count": count,
                },
            )
            inject_span_context(batch.trace_context, span.get_span_context())
            sent = _Sent(ingest_service_pb2.PublishRequest(batch=batch), count, oldest, span)
            self._unacked.append(sent)
            self._unacked_trades += count
            formed.append(sent)
        self._update_gauges()
        return formed

    async def _read_acks(self, call: aio.StreamStreamCall[ingest_service_pb2.PublishRequest, ingest_service_pb2.PublishResponse]) -> None:  # fmt: skip
        while True:
            response = await call.read()
            if response is aio.EOF:
                return
            assert isinstance(response, ingest_service_pb2.PublishResponse)
            self._metrics.ingest_acks.inc()
            self._apply_ack(response.acked_sequence)

    async def _set_aside(self, error: aio.AioRpcError) -> None:
        """Take the batch the bar service rejected out of the resend queue (it would fail again)."""
        sequence = next(
            (int(v) for k, v in error.trailing_metadata() or () if k == REJECTED_SEQUENCE_KEY),
            None,
        )
        found = next(
            (sent for sent in self._unacked if sent.request.batch.sequence == sequence), None
        )
        if found is None:
            log.error("bar service rejected a batch: %s", error.details())
            return
        self._unacked.remove(found)
        self._unacked_trades -= found.trades
        found.span.set_status(trace.StatusCode.ERROR, error.details() or "rejected")
        found.span.end()
        self._metrics.ingest_batches.labels(outcome="rejected").inc()
        self._update_gauges()
        log.error(
            "bar service rejected batch %d of stream %s (%d trades): %s; set aside",
            sequence,
            self.config.stream_id,
            found.trades,
            error.details(),
        )
        if self.on_rejected is not None:
            await self.on_rejected(found.request.batch, error.details() or "")

    def _apply_ack(self, sequence: int) -> None:
        now = time.monotonic()
        acked: list[market_pb2.TradeBatch] = []
        while self._unacked and self._unacked[0].request.batch.sequence <= sequence:
            sent = self._unacked.popleft()
            self._unacked_trades -= sent.trades
            self._metrics.ingest_lag.observe(now - sent.submitted)
            sent.span.end()
            acked.append(sent.request.batch)
        self._acked_sequence = max(self._acked_sequence, sequence)
        self._dropping = False
        self._update_gauges()
        self._acked.set()
        if acked and self.on_acked is not None:
            self.on_acked(acked)

    def _drop_oldest_unsent(self) -> None:
        runs: list[market_pb2.SymbolTrades] = []
        bars: list[market_pb2.SourceBar] = []
        while self.buffered_trades > self.config.max_buffered_trades and self._pending:
            item = self._pending.popleft()
            if item.run is not None:
                runs.append(item.run)
                self._pending_trades -= len(item.run.trade_ids)
            elif item.bar is not None:
                bars.append(item.bar)
        dropped = sum(len(run.trade_ids) for run in runs)
        self.dropped_trades += dropped
        self._metrics.ingest_dropped_trades.inc(dropped)
        if not self._dropping:
            self._dropping = True
            log.warning("ingest buffer full: dropping the oldest unsent trades (to be backfilled)")
        if self.on_dropped is not None:
            self.on_dropped(runs, bars)

    def _update_gauges(self) -> None:
        self._metrics.ingest_unacked_batches.set(len(self._unacked))
        self._metrics.ingest_buffered_trades.set(self.buffered_trades)
