"""A Binance venue as a trade source: symbols spread over connections, kept alive and complete.

Streams (`<symbol>@trade` or `@aggTrade`) are packed onto connection slots of at most
`max_streams` each; a registry change becomes SUBSCRIBE/UNSUBSCRIBE on the slot's live
connection. Each slot reconnects with exponential backoff and jitter (tenacity) behind a
circuit breaker per source (purgatory), and replaces its connection before Binance's
24-hour close with an overlap, so no trade goes unseen; any unplanned loss opens a tail
gap per symbol for the REST backfill. Decoded runs pass the gap book (exactly once) into
the ingest client every `batch_delay_s` or `flush_trades` trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential_jitter

from tickmesh.collector.binance.columns import OffIncrementError
from tickmesh.collector.binance.connection import (
    BinanceConnection,
    ConnectionConfig,
    ConnectionLost,
)
from tickmesh.collector.binance.decoder import BinanceStreamDecoder, DecodeError, DecodeErrorKind
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.binance.parse import Increments
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient
from tickmesh.core.exchanges import exchange_label
from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One Binance venue's stream source."""

    exchange: market_pb2.Exchange.ValueType
    connection: ConnectionConfig
    stream_kind: str = "trade"
    batch_delay_s: float = 0.05
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 30.0


@dataclass(eq=False)
class _Slot:
    index: int
    streams: set[str] = field(default_factory=set)
    connections: list[BinanceConnection] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class _HealthyConnectionLost(Exception):
    """A connection that had delivered frames was lost: reconnect with a fresh backoff."""


class BinanceSource:
    """Every symbol of one Binance venue, over as many connections as the stream limit needs."""

    def __init__(
        self,
        config: SourceConfig,
        gaps: GapBook,
        ingest: IngestClient,
        metrics: CollectorMetrics,
        breakers: AsyncCircuitBreakerFactory,
    ) -> None:
        self.config = config
        self.label = exchange_label(config.exchange)
        self._gaps = gaps
        self._ingest = ingest
        self._metrics = metrics
        self._breakers = breakers
        self._slots: list[_Slot] = []
        self._running = False
        self.reconnects = 0
        self.last_frame_at: float | None = None
        self._errors_logged: dict[str, int] = {}
        # Each symbol's tick/step decimals from the registry; shared with the REST fetcher.
        self.increments: dict[str, Increments] = {}
        # Why the venue could not be reached, until a connection opens again.
        self.last_error: str | None = None
        self._failed_attempts = 0
        self._ever_connected = False
        self._unreachable_logged = False
        metrics.set_breaker(self.label, "closed")

    def stream_name(self, symbol: str) -> str:
        """The stream of a symbol, e.g. 'btcusdt@trade'."""
        return f"{symbol.lower()}@{self.config.stream_kind}"

    def symbols(self) -> set[str]:
        """The symbols currently subscribed or wanted."""
        return {stream.partition("@")[0].upper() for slot in self._slots for stream in slot.streams}

    def set_increments(self, increments: dict[str, Increments]) -> None:
        """Follow the registry's tick/step sizes: finer prices or quantities are refused."""
        for symbol, (price_decimals, quantity_decimals) in increments.items():
            if self.increments.get(symbol) == (price_decimals, quantity_decimals):
                continue
            self.increments[symbol] = (price_decimals, quantity_decimals)
            for slot in self._slots:
                for connection in slot.connections:
                    connection.decoder.set_increments(symbol, price_decimals, quantity_decimals)

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Follow the registry: subscribe new symbols, unsubscribe removed ones."""
        wanted = {self.stream_name(symbol) for symbol in symbols}
        limit = self.config.connection.max_streams
        for slot in self._slots:
            slot.streams &= wanted
        present = {stream for slot in self._slots for stream in slot.streams}
        for stream in sorted(wanted - present):
            free = next((s for s in self._slots if len(s.streams) < limit), None)
            if free is None:
                free = _Slot(len(self._slots))
                self._slots.append(free)
            free.streams.add(stream)
        for slot in self._slots:
            for connection in slot.connections:
                connection.update(slot.streams)
            if self._running:
                self._start_or_stop(slot)

    def _start_or_stop(self, slot: _Slot) -> None:
        if slot.streams and slot.task is None:
            slot.task = asyncio.create_task(self._run_slot(slot), name=f"{self.label}-slot")
        elif not slot.streams and slot.task is not None:
            slot.task.cancel()
            slot.task = None

    async def run(self) -> None:
        """Run every slot and the batching timer until cancelled."""
        self._running = True
        for slot in self._slots:
            self._start_or_stop(slot)
        try:
            while True:
                await asyncio.sleep(self.config.batch_delay_s)
                for slot in self._slots:
                    for connection in slot.connections:
                        connection.flush()
        finally:
            self._running = False
            tasks = [slot.task for slot in self._slots if slot.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for slot in self._slots:
                slot.task = None

    async def _run_slot(self, slot: _Slot) -> None:
        while True:
            retrying = AsyncRetrying(
                wait=wait_exponential_jitter(
                    multiplier=self.config.reconnect_initial_s, max=self.config.reconnect_max_s
                ),
                retry=retry_if_exception_type(ConnectionLost),
                stop=stop_never,
                reraise=True,
            )
            with contextlib.suppress(_HealthyConnectionLost):
                async for attempt in retrying:
                    with attempt:
                        try:
                            await self._serve(slot)
                        except ConnectionLost as error:
                            self._note_failure(error)
                            raise

    def _note_failure(self, error: ConnectionLost) -> None:
        self._failed_attempts += 1
        self.last_error = error.reason
        if not self._ever_connected and not self._unreachable_logged:
            # The first thing a user without internet sees: say which venue and what to do.
            self._unreachable_logged = True
            log.warning(
                "%s cannot be reached at %s (%s); retrying in the background. Without "
                "internet access, run `make demo` for the offline simulator",
                self.label,
                self.config.connection.stream_url,
                error.reason,
            )

    def _connection(self, slot: _Slot) -> BinanceConnection:
        decoder = BinanceStreamDecoder(self.config.exchange)
        for symbol, (price_decimals, quantity_decimals) in self.increments.items():
            decoder.set_increments(symbol, price_decimals, quantity_decimals)
        return BinanceConnection(
            self.config.connection, decoder, slot.streams, self._publish, self._on_decode_error
        )

    async def _open(self, slot: _Slot) -> tuple[BinanceConnection, asyncio.Task[None]]:
        """Open a connection through the breaker; ConnectionLost if it cannot be opened."""
        breaker = await self._breakers.get_breaker(self.label)
        connection = self._connection(slot)
        task = asyncio.create_task(connection.run(), name=f"{self.label}-connection")
        try:
            async with breaker:
                ready = asyncio.create_task(connection.ready.wait())
                await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                if task.done():
                    task.result()  # raises the ConnectionLost that ended it
                    raise ConnectionLost("ended before it was open")
        except OpenedState:
            task.cancel()
            raise ConnectionLost("circuit breaker open") from None
        except BaseException:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            self._metrics.set_breaker(self.label, breaker.context.state)
        slot.connections.append(connection)
        self._ever_connected = True
        self._failed_attempts = 0
        self.last_error = None
        # Trades released between a lost connection and this one's subscription were seen by
        # nobody: (re)open each symbol's tail now that the live stream covers what follows.
        symbols = [stream.partition("@")[0].upper() for stream in slot.streams]
        self._gaps.start_tails(self.config.exchange, symbols)
        return connection, task

    async def _serve(self, slot: _Slot) -> None:
        connection, task = await self._open(slot)
        try:
            while True:
                opened = connection.opened_at or time.monotonic()
                remaining = opened + self.config.connection.max_age_s - time.monotonic()
                done, _ = await asyncio.wait({task}, timeout=max(remaining, 0.0))
                if task in done:
                    self._lost(slot, task)
                    if connection.frames:
                        raise _HealthyConnectionLost
                    task.result()
                    raise ConnectionLost("ended")
                connection, task = await self._roll_over(slot, connection, task)
        finally:
            for live in slot.connections:
                live.flush()
            slot.connections.clear()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _roll_over(
        self, slot: _Slot, old: BinanceConnection, old_task: asyncio.Task[None]
    ) -> tuple[BinanceConnection, asyncio.Task[None]]:
        """Replace an ageing connection: open the new one, overlap, then close the old one."""
        try:
            connection, task = await self._open(slot)
        except ConnectionLost as error:
            log.warning(
                "%s: replacement connection failed (%s); keeping the old one", self.label, error
            )
            old.opened_at = time.monotonic() - self.config.connection.max_age_s + 30.0
            return old, old_task
        # Both connections carry every stream during the overlap; the gap book drops the doubles.
        await asyncio.sleep(self.config.connection.overlap_s)
        old.flush()
        await old.close()
        old_task.cancel()
        await asyncio.gather(old_task, return_exceptions=True)
        if old in slot.connections:
            slot.connections.remove(old)
        self._metrics.reconnects.labels(source=self.label, reason="rollover").inc()
        self.reconnects += 1
        return connection, task

    def _lost(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        error = task.exception()
        reason = error.reason if isinstance(error, ConnectionLost) else repr(error)
        log.warning("%s: connection lost (%s); backfilling and reconnecting", self.label, reason)
        kind = reason.split(" ", 1)[0].split(":", 1)[0]
        self._metrics.reconnects.labels(source=self.label, reason=kind).inc()
        self.reconnects += 1
        symbols = [stream.partition("@")[0].upper() for stream in slot.streams]
        self._gaps.start_tails(self.config.exchange, symbols)

    def _publish(self, connection: BinanceConnection) -> None:
        runs = connection.decoder.take()
        fresh = self._gaps.deliver_many(runs)
        for symbol, ids in connection.decoder.take_refused().items():
            self._gaps.mark_seen(self.config.exchange, symbol, ids)
        if fresh:
            self._ingest.submit(fresh)
        if connection.frames > connection.frames_counted:
            self._metrics.frames.labels(source=self.label).inc(
                connection.frames - connection.frames_counted
            )
            connection.frames_counted = connection.frames
            self.last_frame_at = time.monotonic()

    def _on_decode_error(self, error: DecodeError) -> None:
        self._metrics.parse_errors.labels(source=self.label, kind=error.kind.value).inc()
        seen = self._errors_logged.get(error.kind.value, 0)
        self._errors_logged[error.kind.value] = seen + 1
        if seen % 1000 == 0:  # the first of each kind, then one in a thousand
            log.warning(
                "%s: rejected frame (%s): %s | %s",
                self.label,
                error.kind.value,
                error.message,
                error.sample,
            )

    def on_rest_refused(self, symbol: str, error: OffIncrementError) -> None:
        """A REST row finer than the tick or step size: counted and logged like a frame."""
        self._on_decode_error(
            DecodeError(DecodeErrorKind.OFF_INCREMENT, str(error), f"{symbol} id {error.trade_id}")
        )

    def health(self) -> dict[str, Any]:
        """State for `system:health`: connections, breaker, gaps, last frame age."""
        live = sum(len(slot.connections) for slot in self._slots)
        wanted = sum(1 for slot in self._slots if slot.streams)
        age = (
            None if self.last_frame_at is None else round(time.monotonic() - self.last_frame_at, 3)
        )
        if not wanted:
            state = "idle"
        elif live >= wanted:
            state = "up"
        elif live:
            state = "degraded"
        elif self._failed_attempts:
            state = "unreachable"
        else:
            state = "connecting"
        return {
            "state": state,
            "error": None if state in ("up", "idle") else self.last_error,
            "connections": live,
            "streams": sum(len(slot.streams) for slot in self._slots),
            "reconnects": self.reconnects,
            "last_frame_age_s": age,
            "gap_ids_open": self._gaps.open_ids(self.config.exchange),
            "tails_open": self._gaps.open_tails(self.config.exchange),
        }
