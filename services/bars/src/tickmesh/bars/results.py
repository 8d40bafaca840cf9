"""What the engine hands back per call: bar updates plus the fate of every input record."""

from __future__ import annotations

from dataclasses import dataclass, field

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.trades import QuarantinedTrades, QuarantineReason, SourceBar, TradeRun


@dataclass(frozen=True, slots=True)
class TradeRunResult:
    """Outcome of one trade run; accepted + duplicates + non_market + too_late + quarantined = len."""

    exchange: int
    symbol: str
    updates: list[BarUpdate]
    accepted: int
    duplicates: int
    non_market: int
    too_late: int
    quarantined: int
    too_late_trades: TradeRun | None = None
    quarantined_trades: QuarantinedTrades | None = None
    # Duplicates counted into forming bars (the rest belonged to final or unknown minutes).
    counted_duplicates: int = 0


@dataclass(slots=True)
class SourceBarResult:
    """Outcome of a list of source bars: bar updates and the count of each fate."""

    updates: list[BarUpdate] = field(default_factory=list)
    accepted: int = 0
    replaced: int = 0
    duplicates: int = 0
    too_late: list[SourceBar] = field(default_factory=list)
    quarantined: list[tuple[SourceBar, QuarantineReason]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcome of one `TradeBatch`: one result per trade run plus the source-bar result."""

    runs: list[TradeRunResult]
    source_bars: SourceBarResult

    @property
    def updates(self) -> list[BarUpdate]:
        """Return every final and revised bar of the batch, trade runs first."""
        collected = [update for run in self.runs for update in run.updates]
        collected.extend(self.source_bars.updates)
        return collected
