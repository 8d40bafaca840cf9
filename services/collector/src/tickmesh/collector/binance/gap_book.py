"""The trade-id trackers of every symbol a collector streams, shared by its parts.

Live connections and the REST backfill pass their runs through ``deliver`` (only ids
never delivered get through, to the ingest client); the ingest client reports trades it
dropped from a full buffer to ``reopen_dropped``; the backfill asks ``due`` which ids to
fetch. One book per collector, keyed by (exchange, symbol).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import numpy as np

from tickmesh.collector.binance.id_tracker import TradeIdTracker
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.trade_runs import select_run, trade_ids
from tickmesh.core.exchanges import exchange_label
from tickmesh.v2 import market_pb2

SymbolKey = tuple[int, str]


class GapBook:
    """Trade-id trackers by (exchange, symbol), with a wake-up for the backfill."""

    def __init__(self, metrics: CollectorMetrics) -> None:
        self._metrics = metrics
        self.trackers: dict[SymbolKey, TradeIdTracker] = {}
        self.changed = asyncio.Event()

    def tracker(self, exchange: int, symbol: str) -> TradeIdTracker:
        """The tracker of a symbol, created on first use."""
        key = (exchange, symbol)
        tracker = self.trackers.get(key)
        if tracker is None:
            tracker = self.trackers[key] = TradeIdTracker()
        return tracker

    def deliver(
        self, run: market_pb2.SymbolTrades, outcome: str = "received"
    ) -> market_pb2.SymbolTrades | None:
        """The part of a run never delivered before (None if nothing), recording new gaps."""
        fresh = self.deliver_many([run], outcome)
        return fresh[0] if fresh else None

    def deliver_many(
        self, runs: Iterable[market_pb2.SymbolTrades], outcome: str = "received"
    ) -> list[market_pb2.SymbolTrades]:
        """The never-delivered part of each run (runs left with nothing are dropped).

        A batch of a whole market holds a run per instrument, mostly of one or two trades:
        the counters are added to once per venue and fate for the batch, not per run.
        """
        fresh: list[market_pb2.SymbolTrades] = []
        # (exchange, outcome) -> trades; (exchange) -> new gaps.
        counted: dict[tuple[int, str], int] = {}
        gaps_by_exchange: dict[int, int] = {}
        for run in runs:
            tracker = self.tracker(run.exchange, run.symbol)
            ids = run.trade_ids
            total = len(ids)
            keep, new_gaps = tracker.accept(ids)
            if new_gaps:
                gaps_by_exchange[run.exchange] = gaps_by_exchange.get(run.exchange, 0) + new_gaps
            kept = total if keep is None else int(keep.sum())
            key = (run.exchange, outcome)
            counted[key] = counted.get(key, 0) + kept
            if kept < total:
                key = (run.exchange, "duplicate")
                counted[key] = counted.get(key, 0) + total - kept
            if kept == total:
                fresh.append(run)
            elif kept:
                assert keep is not None
                fresh.append(select_run(run, keep))
        for (exchange, fate), trades in counted.items():
            self._metrics.trades.labels(source=exchange_label(exchange), outcome=fate).inc(trades)
        for exchange, new_gaps in gaps_by_exchange.items():
            self._metrics.gaps_found.labels(source=exchange_label(exchange)).inc(new_gaps)
        if gaps_by_exchange:
            self.changed.set()
        return fresh

    def mark_seen(self, exchange: int, symbol: str, ids: list[int]) -> None:
        """Count refused trades' ids as seen: they exist, so they are never a gap to fetch."""
        if not ids:
            return
        tracker = self.tracker(exchange, symbol)
        # Called right after the run they came with was delivered: an id inside a gap the run
        # opened fills it, an id above the high mark moves the mark.
        _, new_gaps = tracker.accept(np.array(sorted(ids), dtype=np.int64))
        if new_gaps:
            self._metrics.gaps_found.labels(source=exchange_label(exchange)).inc(new_gaps)
            self.changed.set()

    def reopen_dropped(
        self, runs: list[market_pb2.SymbolTrades], bars: list[market_pb2.SourceBar]
    ) -> None:
        """Record trades the ingest client dropped unsent as gaps (the backfill refills them)."""
        for run in runs:
            gaps = self.tracker(run.exchange, run.symbol).reopen(trade_ids(run))
            self._metrics.gaps_found.labels(source=exchange_label(run.exchange)).inc(gaps)
        if runs:
            self.changed.set()

    def start_tails(self, exchange: int, symbols: Iterable[str]) -> None:
        """After a lost connection: ids after each symbol's high mark may have been missed."""
        for symbol in symbols:
            tracker = self.trackers.get((exchange, symbol))
            if tracker is not None and tracker.start_tail():
                self._metrics.gaps_found.labels(source=exchange_label(exchange)).inc()
        self.changed.set()

    def complete_through(self, key: SymbolKey) -> int | None:
        """The highest id up to which every id was delivered (None before the first)."""
        tracker = self.trackers.get(key)
        if tracker is None or tracker.high is None:
            return None
        bound = tracker.high
        if tracker.gaps:
            bound = min(bound, min(gap.first for gap in tracker.gaps) - 1)
        if tracker.tail_from is not None:
            bound = min(bound, tracker.tail_from - 1)
        return bound

    def resume_after(self, key: SymbolKey, last_durable: int) -> bool:
        """Start a symbol not seen yet after `last_durable`, with the ids after it to backfill."""
        tracker = self.tracker(*key)
        if tracker.high is not None:
            return False
        tracker.high = last_durable
        tracker.start_tail()
        self._metrics.gaps_found.labels(source=exchange_label(key[0])).inc()
        self.changed.set()
        return True

    def due(self, exchange: int, grace_s: float) -> list[tuple[str, int]]:
        """(symbol, first id to fetch) of the exchange's symbols with a gap due for backfill."""
        now = time.monotonic()
        wanted: list[tuple[str, int]] = []
        for (key_exchange, symbol), tracker in self.trackers.items():
            if key_exchange != exchange:
                continue
            first = tracker.next_fetch(now, grace_s)
            if first is not None:
                wanted.append((symbol, first))
        return wanted

    def open_ids(self, exchange: int) -> int:
        """Ids recorded missing over an exchange's symbols (for the gauge and health)."""
        return sum(
            tracker.missing_ids
            for (key_exchange, _), tracker in self.trackers.items()
            if key_exchange == exchange
        )

    def open_tails(self, exchange: int) -> int:
        """Symbols of an exchange whose tail after a reconnect is not yet backfilled."""
        return sum(
            1
            for (key_exchange, _), tracker in self.trackers.items()
            if key_exchange == exchange and tracker.tail_from is not None
        )
