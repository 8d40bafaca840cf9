"""The replay clock: releases source events when due, records trades, injects faults.

Events are released in batches: at a given speed, everything whose pacing time has
come; at full speed, up to a thousand at a time, waiting for clients to drain
(backpressure) so a test can receive every frame. Each trade is recorded in the
ledger before its frame goes out, so a frame lost to a fault is still queryable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator

from tickmesh.collector.simulator.config import Market, SimulatorConfig
from tickmesh.collector.simulator.frames import (
    agg_trade_payload,
    malformed_payload,
    trade_payload,
)
from tickmesh.collector.simulator.hub import SimulatorStats, StreamHub
from tickmesh.collector.simulator.ledger import SymbolLedger, TradeLedger
from tickmesh.collector.simulator.sources import SimEvent, SimTrade

_log = logging.getLogger(__name__)
_FULL_SPEED_BATCH = 1000
_PACED_BATCH = 2000
_BACKLOG_HIGH_WATER = 5000
_MAX_SLEEP_S = 0.05


class ReplayEngine:
    """Drives the source events onto the hub at the configured speed."""

    def __init__(
        self,
        events: Iterator[SimEvent],
        config: SimulatorConfig,
        hub: StreamHub,
        ledger: TradeLedger,
        stats: SimulatorStats,
    ) -> None:
        self._events = events
        self._config = config
        self._hub = hub
        self._ledger = ledger
        self._stats = stats
        self._rng = random.Random(config.faults.seed)
        self._drop_points: list[int] = []
        self.schedule_drops(config.faults.drop_connections, config.faults.drop_within_trades)
        self._held: dict[tuple[Market, str], str] = {}
        self._running = asyncio.Event()
        if not config.paused:
            self._running.set()
        self._rebase = True
        self.done = asyncio.Event()
        # Called with every trade as it is released (a benchmark indexes exchange times).
        self.trade_taps: list[Callable[[SimTrade], None]] = []

    def pause(self) -> None:
        """Stop releasing events (connections stay open)."""
        self._running.clear()

    def resume(self) -> None:
        """Release events again; paced replays continue from where they paused."""
        self._rebase = True
        self._running.set()

    @property
    def paused(self) -> bool:
        """Whether the replay is paused."""
        return not self._running.is_set()

    def schedule_drops(self, count: int, within_trades: int) -> list[int]:
        """Drop every connection at `count` seeded trade counts in the next `within_trades`."""
        count = min(count, within_trades)
        if count <= 0:
            return []
        base = self._stats.trades_emitted
        points = sorted(
            base + point for point in self._rng.sample(range(1, within_trades + 1), count)
        )
        self._drop_points = sorted(self._drop_points + points)
        return points

    async def run(self) -> None:
        """Release every event, then set `done` (an endless random walk never ends)."""
        # Nothing is pulled before the first resume: a live source (the whole market) stamps
        # its trades from the moment it is first read.
        await self._running.wait()
        pending: SimEvent | None = next(self._events, None)
        base_event_ns = 0
        base_wall = 0.0
        while pending is not None:
            await self._running.wait()
            speed = self._config.speed
            batch: list[SimEvent] = []
            if speed is None:
                while pending is not None and len(batch) < _FULL_SPEED_BATCH:
                    batch.append(pending)
                    pending = next(self._events, None)
            else:
                if self._rebase:
                    base_event_ns, base_wall, self._rebase = pending.at_ns, time.monotonic(), False
                due_ns = base_event_ns + (time.monotonic() - base_wall) * 1e9 * speed
                # Capped, so a replay that falls behind its clock still yields to the loop.
                while pending is not None and pending.at_ns <= due_ns and len(batch) < _PACED_BATCH:
                    batch.append(pending)
                    pending = next(self._events, None)
                if not batch and pending is not None:
                    wait_s = (pending.at_ns - due_ns) / 1e9 / speed
                    await asyncio.sleep(min(max(wait_s, 0.0), _MAX_SLEEP_S))
                    continue
            self._release(batch)
            await self._hub.wait_drained(_BACKLOG_HIGH_WATER)
            # Let the connections' writers (and anything else on this loop) run between batches,
            # also when the paced replay is behind and the next batch is already due.
            await asyncio.sleep(0)
        self.done.set()
        _log.info("replay finished after %d trades", self._stats.trades_emitted)

    def _release(self, batch: list[SimEvent]) -> None:
        touched: dict[SymbolLedger, int] = {}
        for event in batch:
            if event.trade is not None:
                trade = event.trade
                ledger = self._ledger.register(event.market, trade.symbol)
                ledger.record_trade(trade)
                touched[ledger] = trade.time_ms
                self._stats.trades_emitted += 1
                for tap in self.trade_taps:
                    tap(trade)
                if self._drop_points and self._stats.trades_emitted >= self._drop_points[0]:
                    self._drop_points.pop(0)
                    self._stats.drop_events += 1
                    self._hub.drop_all()
                data = event.data if event.data is not None else trade_payload(trade)
                self._publish_trade(event.market, event.stream, data)
            elif event.data is not None:
                if event.agg is not None:
                    symbol = event.stream.partition("@")[0].upper()
                    self._ledger.register(event.market, symbol).record_aggregate(event.agg)
                self._hub.publish(event.market, event.stream, event.data)
        for ledger, last_ms in touched.items():
            stream = ledger.symbol.lower() + "@aggTrade"
            for agg in ledger.flush_aggregates(last_ms):
                self._hub.publish(
                    ledger.market, stream, agg_trade_payload(ledger.market, ledger.symbol, agg)
                )
        for (market, stream), data in self._held.items():
            self._hub.publish(market, stream, data)
        self._held.clear()

    def _publish_trade(self, market: Market, stream: str, data: str) -> None:
        faults = self._config.faults
        if not self._hub.subscribers(market, stream):
            return
        held = self._held.pop((market, stream), None)
        if held is None and faults.reorder_rate and self._rng.random() < faults.reorder_rate:
            # Hold this frame back; it goes out right after the stream's next frame.
            self._held[(market, stream)] = data
            self._stats.reordered += 1
            return
        self._hub.publish(market, stream, data)
        if held is not None:
            self._hub.publish(market, stream, held)
        if faults.duplicate_rate and self._rng.random() < faults.duplicate_rate:
            self._hub.publish(market, stream, data)
            self._stats.duplicates_sent += 1
        if faults.malformed_rate and self._rng.random() < faults.malformed_rate:
            _, bad = malformed_payload(data, self._rng)
            self._hub.publish(market, stream, bad)
            self._stats.malformed_sent += 1
