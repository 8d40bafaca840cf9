"""The bar engine: exact OHLCV bars on six timeframes from trade runs and source bars, no I/O.

The gRPC server owns one engine per process and calls it from one task (it is not thread-safe):
`apply_batch` per ingested `TradeBatch`, `advance` on a wall-clock tick so idle symbols finalize,
`take_forming_updates` on the forming-bar stream tick (every 250 ms), and `snapshot_changed` /
`restore` around its group commits to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.results import BatchResult, SourceBarResult, TradeRunResult
from tickmesh.bars.symbol_bars import SymbolBars
from tickmesh.bars.trades import SourceBar, TradeRun

from tickmesh.v1 import market_pb2

SymbolKey = tuple[int, str]


class BarEngine:
    """Bars of every symbol the process owns, keyed by (exchange, symbol)."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config if config is not None else EngineConfig()
        self._symbols: dict[SymbolKey, SymbolBars] = {}
        self._clock_ns: int | None = None
        self._changed: set[SymbolKey] = set()
        self._forming: set[SymbolKey] = set()

    @property
    def clock_ns(self) -> int | None:
        """Return the latest wall-clock time passed to `advance`, or None before the first."""
        return self._clock_ns

    def symbols(self) -> list[SymbolKey]:
        """Return the (exchange, symbol) keys the engine holds state for."""
        return list(self._symbols)

    def _symbol(self, exchange: int, symbol: str) -> SymbolBars:
        key = (exchange, symbol)
        state = self._symbols.get(key)
        if state is None:
            state = SymbolBars(exchange, symbol, self.config)
            self._symbols[key] = state
        return state

    def apply_trades(self, run: TradeRun) -> TradeRunResult:
        """Apply one trade run of one symbol; return its bar updates and per-trade fates."""
        key = (run.exchange, run.symbol)
        result = self._symbol(*key).apply_trades(run, self._clock_ns)
        if result.accepted or result.too_late or result.quarantined or result.non_market:
            self._changed.add(key)
        if result.accepted:
            self._forming.add(key)
        return result

    def apply_source_bars(self, bars: Iterable[SourceBar]) -> SourceBarResult:
        """Apply source bars (any symbols); a re-sent identical bar is a duplicate, a changed one replaces."""
        grouped: dict[SymbolKey, list[SourceBar]] = {}
        for bar in bars:
            grouped.setdefault((bar.exchange, bar.symbol), []).append(bar)
        result = SourceBarResult()
        for key, symbol_bars in grouped.items():
            applied_before = result.accepted + result.replaced
            self._symbol(*key).apply_source_bars(symbol_bars, self._clock_ns, result)
            if result.accepted + result.replaced > applied_before:
                self._changed.add(key)
                self._forming.add(key)
        return result

    def apply_batch(self, batch: market_pb2.TradeBatch) -> BatchResult:
        """Apply a whole `TradeBatch` message: each trade run, then its source bars."""
        runs = [self.apply_trades(TradeRun.from_proto(message)) for message in batch.trades]
        source = self.apply_source_bars(SourceBar.from_proto(bar) for bar in batch.source_bars)
        return BatchResult(runs, source)

    def advance(self, now_ns: int) -> list[BarUpdate]:
        """Tell the engine the wall-clock time; return the bars of idle symbols that became final."""
        if self._clock_ns is None or now_ns > self._clock_ns:
            self._clock_ns = now_ns
        frontier = now_ns - self.config.allowed_lateness_ns
        updates: list[BarUpdate] = []
        for key, state in self._symbols.items():
            if state.advance(frontier, updates):
                self._changed.add(key)
        return updates

    def take_forming_updates(self) -> list[BarUpdate]:
        """Return the forming bars (every timeframe) that changed since the last call."""
        updates: list[BarUpdate] = []
        for key in sorted(self._forming):
            state = self._symbols.get(key)
            if state is not None:
                state.take_forming(updates)
        self._forming.clear()
        return updates

    def snapshot_symbol(self, exchange: int, symbol: str) -> dict[str, Any]:
        """Return one symbol's state as a JSON-able dict; KeyError if the engine never saw it."""
        return self._symbols[(exchange, symbol)].to_dict()

    def snapshot_changed(self) -> list[dict[str, Any]]:
        """Return the states of the symbols changed since the last call (for group commits)."""
        snapshots = [self._symbols[key].to_dict() for key in sorted(self._changed)]
        self._changed.clear()
        return snapshots

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the states of every symbol."""
        return [state.to_dict() for state in self._symbols.values()]

    def restore(self, snapshots: Iterable[dict[str, Any]]) -> None:
        """Load symbol states saved by a snapshot method, replacing what the engine holds for them."""
        for data in snapshots:
            state = SymbolBars.from_dict(data, self.config)
            key = (state.exchange, state.symbol)
            self._symbols[key] = state
            self._forming.add(key)
