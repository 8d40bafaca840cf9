"""The history lane: trades older than a live symbol's retained window, built beside it.

The live engine keeps a symbol's bars for `retention` behind its newest trade and refuses older
trades as too late. A backfill of last month for a symbol live today sends exactly those; the
lane builds them with the same exact code (one SymbolBars per instrument of its own) into final
bars that are persisted and published like live ones, oldest first. Its clock follows the
imported trades (a replay clock, see SymbolBars.symbol_clock_ns), capped at the end of the UTC
day of its newest trade (Binance's daily files are whole days: no flat bar is invented past
what was imported) and at the live symbol's retained window (those minutes are the live
engine's). Trades inside the window go to the live engine as before.

Durable like the live engine: each changed instrument's head (dedup ids, watermark, frontier,
last closes, forming bars) goes into `bar_history_state` in the group commit that acknowledges
its trades. Its final bars are not saved (they are in `candles`), so after a restart a trade
older than a restored instrument's frontier cannot revise them: it is refused as too late
(quarantined, counted) rather than written over a final bar as a partial one. A resumed
import sends only trades after its last acknowledged one, which are never that old.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.engine import BarEngine, SymbolKey
from tickmesh.bars.results import TradeRunResult
from tickmesh.bars.symbol_bars import SymbolBars
from tickmesh.bars.trades import TradeRun

NS_PER_DAY = 86_400 * 1_000_000_000


class HistoryLane:
    """Bars of trades too old for the live engine, one SymbolBars per instrument."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._symbols: dict[SymbolKey, SymbolBars] = {}
        self._changed: set[SymbolKey] = set()
        # Per restored instrument, the minute before which its final bars are not held.
        self._restored_before: dict[SymbolKey, int] = {}

    def route(self, run: TradeRun, live: BarEngine) -> tuple[TradeRun | None, TradeRun | None]:
        """Split a run into (live part, history part) at the live symbol's retained window."""
        boundary = live.late_before_ns(run.exchange, run.symbol)
        if boundary is None or len(run) == 0:
            return run, None
        old = run.event_time_ns < boundary
        if not old.any():
            return run, None
        if old.all():
            return None, run
        return run.take(np.flatnonzero(~old)), run.take(np.flatnonzero(old))

    def apply_trades(self, run: TradeRun, clock_ns: int | None) -> TradeRunResult:
        """Build one run of old trades (dedup by trade id within the lane)."""
        key = (run.exchange, run.symbol)
        state = self._symbols.get(key)
        if state is None:
            state = self._symbols[key] = SymbolBars(run.exchange, run.symbol, self.config)
        self._changed.add(key)
        before = self._restored_before.get(key)
        late = None if before is None else run.event_time_ns < before
        if late is None or not late.any():
            result = state.apply_trades(run, clock_ns)
            state.take_final_rows()  # the lane keeps no engine snapshot rows
            return result
        too_late = run.take(np.flatnonzero(late))
        rest = run.take(np.flatnonzero(~late))
        result = state.apply_trades(rest, clock_ns)
        state.take_final_rows()
        return dataclasses.replace(
            result, too_late=result.too_late + len(too_late), too_late_trades=too_late
        )

    def take_changed_heads(self) -> list[dict[str, Any]]:
        """The heads of the instruments changed since the last call, for the group commit."""
        keys = sorted(self._changed)
        self._changed.clear()
        return [self._symbols[key].to_dict(with_finals=False) for key in keys]

    def restore(self, heads: list[dict[str, Any]], now_ns: int) -> None:
        """Load saved heads after a restart; the time the service was down does not count."""
        for data in heads:
            state = SymbolBars.from_dict(data, self.config)
            state.resume_clock_at(now_ns)
            key = (state.exchange, state.symbol)
            self._symbols[key] = state
            if state.frontier_ns is not None:
                self._restored_before[key] = state.frontier_ns - state.frontier_ns % 60_000_000_000

    def advance(self, now_ns: int, live: BarEngine) -> list[BarUpdate]:
        """Finalise what the lane's clocks passed, within each symbol's cap."""
        updates: list[BarUpdate] = []
        for (exchange, symbol), state in self._symbols.items():
            clock = state.symbol_clock_ns(now_ns)
            if clock is None or state.max_event_ns is None:
                continue
            cap = state.max_event_ns - state.max_event_ns % NS_PER_DAY + NS_PER_DAY
            boundary = live.late_before_ns(exchange, symbol)
            if boundary is not None:
                cap = min(cap, boundary)
            frontier = min(clock - self.config.allowed_lateness_ns, cap)
            if state.advance(frontier, updates):
                self._changed.add((exchange, symbol))
            state.take_final_rows()
        return updates
