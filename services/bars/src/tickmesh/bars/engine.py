"""The bar engine: exact OHLCV bars on six timeframes from trade runs and source bars, no I/O.

State is kept per instrument, keyed by (exchange, symbol): BTCUSDT on Binance spot and on USD-M
are two instruments side by side. Values are integer mantissas at each instrument's scales.

The gRPC server owns one engine per process and calls it from one task (it is not thread-safe):
`apply_batch` per ingested `TradeBatch`, `advance` on a wall-clock tick so idle symbols finalize,
`take_forming` on the forming-bar stream tick (every 10 ms), and `snapshot_changes`
(incremental) or `snapshot_changed` (whole states) plus `restore` around its group commits.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.forming_bars import FormingBar
from tickmesh.bars.results import BatchResult, SourceBarResult, TradeRunResult
from tickmesh.bars.simple_runs import apply_simple_runs
from tickmesh.bars.symbol_bars import SymbolBars
from tickmesh.bars.trades import SourceBar, TradeRun
from tickmesh.v2 import market_pb2

SymbolKey = tuple[int, str]
# One saved final bar: (exchange, symbol, timeframe label, row of ROW_FIELDS).
FinalBarRow = tuple[int, str, str, list[Any]]


class BarEngine:
    """Bars of every instrument the process owns, keyed by (exchange, symbol)."""

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

    def late_before_ns(self, exchange: int, symbol: str) -> int | None:
        """The first minute a symbol still retains (older trades are too late); None if unseen."""
        state = self._symbols.get((exchange, symbol))
        return None if state is None else state.late_before_ns()

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
        if result.counted_duplicates:  # only forming bars count them, see SymbolBars
            self._changed.add(key)
            self._forming.add(key)
        if result.accepted:
            self._forming.add(key)
        return result

    def apply_simple_runs(self, runs: Sequence[TradeRun]) -> list[TradeRunResult | None]:
        """Apply the simple runs of a batch at once (see simple_runs); None in place of the others."""
        results = apply_simple_runs(runs, self._symbols, self.config.max_future_ns, self._clock_ns)
        for result in results:
            if result is not None:
                key = (result.exchange, result.symbol)
                self._changed.add(key)
                self._forming.add(key)
        return results

    def apply_runs(self, runs: Sequence[TradeRun]) -> list[TradeRunResult]:
        """Apply a batch's trade runs: the simple ones at once, every other one by itself."""
        results = self.apply_simple_runs(runs)
        return [
            self.apply_trades(run) if result is None else result
            for run, result in zip(runs, results, strict=True)
        ]

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
        runs = self.apply_runs([TradeRun.from_proto(message) for message in batch.trades])
        source = self.apply_source_bars(SourceBar.from_proto(bar) for bar in batch.source_bars)
        return BatchResult(runs, source)

    def advance(self, now_ns: int) -> list[BarUpdate]:
        """Tell the engine the wall-clock time; return the bars that became final by each symbol's clock."""
        if self._clock_ns is None or now_ns > self._clock_ns:
            self._clock_ns = now_ns
        updates: list[BarUpdate] = []
        for key, state in self._symbols.items():
            if now_ns >= state.quiet_until_wall_ns and state.advance_by_wall(now_ns, updates):
                self._changed.add(key)
        return updates

    def take_forming(self, wanted: Container[object] | None = None) -> list[FormingBar]:
        """Name the forming bars (every timeframe) that changed since the last call, of the
        instruments in `wanted` (None: every one); the others' changes are forgotten."""
        changed: list[FormingBar] = []
        for key in sorted(self._forming):
            state = self._symbols.get(key)
            if state is None:
                continue
            if wanted is None or key in wanted:
                state.take_forming(changed)
            else:
                state.forget_forming()
        self._forming.clear()
        return changed

    def take_forming_updates(self) -> list[BarUpdate]:
        """Return the forming bars (every timeframe) that changed since the last call."""
        return [update for bar in self.take_forming() if (update := bar.update()) is not None]

    def snapshot_symbol(self, exchange: int, symbol: str) -> dict[str, Any]:
        """Return one symbol's state as a JSON-able dict; KeyError if the engine never saw it."""
        return self._symbols[(exchange, symbol)].to_dict()

    def snapshot_changed(self) -> list[dict[str, Any]]:
        """Return the whole states of the symbols changed since the last call."""
        keys = sorted(self._changed)
        self._changed.clear()
        snapshots = []
        for key in keys:
            state = self._symbols[key]
            state.take_final_rows()  # a whole state already holds every final bar
            snapshots.append(state.to_dict())
        return snapshots

    def snapshot_changes(self) -> tuple[list[dict[str, Any]], list[FinalBarRow]]:
        """Return an incremental snapshot for group commits: (heads, final-bar rows).

        A head is a symbol's state without its final bars (dedup ids, watermark, frontier, last
        closes, forming bars: a few kB), one per symbol changed since the last call; the rows are
        the final bars emitted or revised since then, upserted by (exchange, symbol, timeframe,
        open time). Restoring the latest head of each symbol plus every stored row gives the
        same engine as a whole snapshot; rows older than a head's retention are ignored.
        """
        keys = sorted(self._changed)
        self._changed.clear()
        heads: list[dict[str, Any]] = []
        rows: list[FinalBarRow] = []
        for exchange, symbol in keys:
            state = self._symbols[(exchange, symbol)]
            heads.append(state.to_dict(with_finals=False))
            for label, changed in state.take_final_rows().items():
                rows.extend((exchange, symbol, label, row) for row in changed)
        return heads, rows

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the whole states of every symbol."""
        return [state.to_dict() for state in self._symbols.values()]

    def restore(
        self,
        snapshots: Iterable[dict[str, Any]],
        final_rows: Iterable[FinalBarRow] = (),
        now_ns: int | None = None,
    ) -> None:
        """Load saved symbol states (whole, or heads plus their final-bar rows), replacing them.

        With `now_ns` (a restart), the time the service was down does not count on a replayed
        symbol's clock: its unacknowledged trades are about to be resent, and must not find
        their minutes already final.
        """
        for data in snapshots:
            state = SymbolBars.from_dict(data, self.config)
            if now_ns is not None:
                state.resume_clock_at(now_ns)
            key = (state.exchange, state.symbol)
            self._symbols[key] = state
            self._forming.add(key)
        for exchange, symbol, label, row in final_rows:
            restored = self._symbols.get((exchange, symbol))
            if restored is None:
                raise ValueError(f"final bar of {symbol} ({exchange}) has no saved head")
            restored.add_final_rows(label, [row])
