"""All bar state of one (exchange, symbol): dedup ids, watermark, and one book per timeframe.

Each bar also counts the trades of its minutes that were dropped as duplicates (by the
duplicate's own event time) and that arrived out of order (after a trade with a later
(event time, trade id)); higher timeframes sum their minutes' counts. An out-of-order trade is
built into its bar anyway, so it is counted in that bar's next version (a revision if the bar
was final). A duplicate changes no price or volume, so it is counted only while its minute is
still forming: revising a final bar (re-persisted, re-emitted on six timeframes, recomputed by
analytics from there on) only to raise a counter would turn every overlap of a REST backfill
with the live stream into a revision storm. Duplicates of final or pruned minutes are still
counted in the bar service's trade metrics (outcome "duplicate").

Values are exact integers at the instrument's one (price scale, quantity scale): a run at a
coarser scale is multiplied up (vectorised, int64 when it fits), and a run or source bar at a
finer scale first raises the scales of every held bar (`rescale_to`, the rare path).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tickmesh.bars.bar_state import (
    ROW_FIELDS,
    SOURCE_CLOSE_TRADE_ID,
    SOURCE_OPEN_TRADE_ID,
    BarAccumulator,
    BarUpdate,
)
from tickmesh.bars.config import EngineConfig
from tickmesh.bars.dedup import TradeIdSet
from tickmesh.bars.forming_bars import FormingBar
from tickmesh.bars.legacy_snapshots import LEGACY_SNAPSHOT_VERSION, upgrade_row, upgrade_snapshot
from tickmesh.bars.minute_merge import merge_minutes
from tickmesh.bars.minutes import aggregate_minutes
from tickmesh.bars.results import SourceBarResult, TradeRunResult
from tickmesh.bars.rollup import Scales, TimeframeBook
from tickmesh.bars.scaling import raise_scales, run_at_scales
from tickmesh.bars.trade_filter import AcceptedTrades, OrderKey, sort_run
from tickmesh.bars.trades import QuarantineReason, SourceBar, TradeRun
from tickmesh.core.decimals import power_of_ten
from tickmesh.core.timeframes import NS_PER_MINUTE, TIMEFRAMES

# Version 2: integer values at the instrument's scales (version 1 held floats, see legacy_snapshots).
SNAPSHOT_VERSION = 2
IntArray = npt.NDArray[np.int64]
SourceBarFate = Literal["accepted", "replaced", "duplicate", "too_late"]


class SymbolBars:
    """Bars of one symbol on every timeframe; 1m partial bars are merged into all six books."""

    __slots__ = (
        "_settled_at",
        "books",
        "config",
        "event_seen_wall_ns",
        "exchange",
        "frontier_ns",
        "ids",
        "max_event_ns",
        "order_key",
        "quiet_until_wall_ns",
        "scales",
        "symbol",
    )

    def __init__(self, exchange: int, symbol: str, config: EngineConfig) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.config = config
        self.ids = TradeIdSet(config.max_id_intervals)
        flat_fill = exchange in config.flat_fill_exchanges
        # None until the first input sets them; every book shares the one Scales object.
        self.scales: Scales | None = None
        shared = Scales()
        self.books = tuple(
            TimeframeBook(exchange, symbol, spec, flat_fill, shared) for spec in TIMEFRAMES
        )
        self.max_event_ns: int | None = None
        # Wall-clock time at which max_event_ns was last raised: the symbol's clock runs on from
        # its last event time by the wall-clock time elapsed since (see symbol_clock_ns).
        self.event_seen_wall_ns: int | None = None
        # Everything ending at or before the frontier is final: max(watermark, wall clock - lateness).
        self.frontier_ns: int | None = None
        # (frontier minute, horizon minute) of the last settle: finality and pruning change only
        # when one of them moves, so most runs skip the per-book work.
        self._settled_at: tuple[int, int] | None = None
        # The largest (event time, trade id) of every sound trade: a trade below it arrived late.
        self.order_key: OrderKey | None = None
        # Until this wall-clock time no wall-clock tick can change anything (see
        # advance_by_wall); any input resets it.
        self.quiet_until_wall_ns = 0

    def late_before_ns(self) -> int | None:
        """Return the first minute still retained; trades before it are too late for a revision."""
        if self.frontier_ns is None:
            return None
        horizon = self.frontier_ns - self.config.retention_ns
        return horizon - horizon % NS_PER_MINUTE

    def _cover_scales(self, price_scale: int, quantity_scale: int) -> Scales:
        """Make the instrument's scales at least these (first input, or a finer one)."""
        scales = self.scales
        if scales is None:
            scales = self.books[0].scales
            scales.price, scales.quantity = price_scale, quantity_scale
            self.scales = scales
        elif price_scale > scales.price or quantity_scale > scales.quantity:
            self.rescale_to(max(price_scale, scales.price), max(quantity_scale, scales.quantity))
        return scales

    def rescale_to(self, price_scale: int, quantity_scale: int) -> None:
        """Raise the instrument's scales, multiplying every held value up (exact, rare)."""
        raise_scales(self.books, price_scale, quantity_scale)
        self.scales = self.books[0].scales

    def apply_trades(self, run: TradeRun, clock_ns: int | None) -> TradeRunResult:
        """Apply one trade run: dedup, quarantine, exclude non-market, build bars, emit finals."""
        self.quiet_until_wall_ns = 0
        if len(run) == 0:
            return TradeRunResult(self.exchange, self.symbol, [], 0, 0, 0, 0, 0)
        run = run_at_scales(run, self._cover_scales(run.price_scale, run.quantity_scale))
        future_limit = None if clock_ns is None else clock_ns + self.config.max_future_ns
        fates = sort_run(run, self.ids, future_limit, self.late_before_ns(), self.order_key)
        self.order_key = fates.order_key
        updates: list[BarUpdate] = []
        revised: list[set[int]] = [set() for _ in self.books]
        if fates.accepted is not None:
            self._merge_minutes(fates.accepted, revised)
        # After the merge (an original may be in this run), before the frontier moves on.
        counted = 0
        if fates.duplicate_times is not None:
            counted = self._count_duplicates(fates.duplicate_times)
        if fates.latest_ns is not None:
            if self.max_event_ns is None or fates.latest_ns > self.max_event_ns:
                self.max_event_ns = fates.latest_ns
                self.event_seen_wall_ns = clock_ns
            self.settle(fates.latest_ns - self.config.allowed_lateness_ns, revised, updates)
        too_late = 0 if fates.too_late is None else len(fates.too_late)
        quarantined = 0 if fates.quarantined is None else len(fates.quarantined.trades)
        return TradeRunResult(
            self.exchange,
            self.symbol,
            updates,
            len(run) - fates.duplicates - fates.non_market - too_late - quarantined,
            fates.duplicates,
            fates.non_market,
            too_late,
            quarantined,
            fates.too_late,
            fates.quarantined,
            counted,
        )

    def _count_duplicates(self, event_time_ns: IntArray) -> int:
        """Count dropped duplicates into the bars of their minutes still forming; return how many."""
        minute_book = self.books[0]
        forming_from = minute_book.emitted_until
        minutes, counts = np.unique(
            event_time_ns - event_time_ns % NS_PER_MINUTE, return_counts=True
        )
        counted = 0
        for minute, count in zip(minutes.tolist(), counts.tolist(), strict=True):
            if forming_from is not None and minute < forming_from:
                continue  # final (or never built): see the module docstring
            held = minute_book.bars.get(minute)
            if held is None or not held.has_data:
                continue  # no trade of that minute was built: nothing to count them against
            for book in self.books:
                book.add_duplicates(minute, count)
            counted += count
        return counted

    def _merge_minutes(self, trades: AcceptedTrades, revised: list[set[int]]) -> None:
        """Aggregate sorted trades per minute and merge each minute into every timeframe."""
        minutes = aggregate_minutes(
            trades.trade_ids,
            trades.prices,
            trades.quantities,
            trades.notionals,
            trades.event_time_ns,
            trades.trade_counts,
            trades.out_of_order,
            trades.taker_buys,
        )
        for book, book_revised in zip(self.books, revised, strict=True):
            merge_minutes(book, minutes, book_revised)

    def settle(
        self, frontier_ns: int | None, revised: list[set[int]], out: list[BarUpdate]
    ) -> bool:
        """Move the frontier, then emit revisions, new finals and prune, book by book.

        Return False when nothing could change: finality, pruning and the too-late boundary
        depend on the frontier and horizon only through their minutes.
        """
        if frontier_ns is not None and (self.frontier_ns is None or frontier_ns > self.frontier_ns):
            self.frontier_ns = frontier_ns
        frontier = self.frontier_ns
        if frontier is None:
            return False
        horizon = frontier - self.config.retention_ns
        settled_at = (frontier // NS_PER_MINUTE, horizon // NS_PER_MINUTE)
        if (
            settled_at == self._settled_at
            and not any(revised)
            and not any(book.lowered for book in self.books)
        ):
            return False
        self._settled_at = settled_at
        # Revisions first: they may change the close that the next flat bars repeat.
        for book, book_revised in zip(self.books, revised, strict=True):
            if book_revised:
                book.emit_revisions(book_revised, out)
            book.finalize(frontier, horizon, out)
            book.prune(horizon)
        return True

    def symbol_clock_ns(self, wall_ns: int) -> int | None:
        """The symbol's clock for wall-clock finality; None before its first event.

        A live feed (events seen within `replay_lag_ns` of the wall clock) follows the wall
        clock. A feed of past trades (a replay, a long backfill) follows its last event time plus
        the wall-clock time since it was seen, so replayed trades are never "too late" against
        today's date, and the last bars of a replay still become final once it goes quiet.
        """
        if self.max_event_ns is None:
            return None
        seen = self.event_seen_wall_ns
        # Events applied before any wall clock was known cannot be told apart: trust the clock.
        if seen is None or seen - self.max_event_ns <= self.config.replay_lag_ns:
            return wall_ns
        return self.max_event_ns + max(0, wall_ns - seen)

    def resume_clock_at(self, wall_ns: int) -> None:
        """After a restart: a replayed symbol's clock goes on from `wall_ns`, not from before the stop."""
        self.quiet_until_wall_ns = 0
        seen = self.event_seen_wall_ns
        if (
            self.max_event_ns is not None
            and seen is not None
            and seen - self.max_event_ns > self.config.replay_lag_ns
        ):
            self.event_seen_wall_ns = max(seen, wall_ns)

    def advance_by_wall(self, wall_ns: int, out: list[BarUpdate]) -> bool:
        """Move the frontier to the symbol's clock at `wall_ns` minus the allowed lateness; True if
        state changed.

        Finality, pruning and the too-late boundary change only when the frontier's minute or
        the horizon's does, and without input the symbol's clock runs at the wall clock's pace,
        so until the next of those minutes is reached a tick is skipped outright: a whole
        market's idle instruments cost the wall-clock tick nothing between minute boundaries.
        """
        if wall_ns < self.quiet_until_wall_ns:
            return False
        clock = self.symbol_clock_ns(wall_ns)
        if clock is None:
            return False
        frontier = clock - self.config.allowed_lateness_ns
        changed = self.advance(frontier, out)
        horizon = frontier - self.config.retention_ns
        self.quiet_until_wall_ns = wall_ns + min(
            NS_PER_MINUTE - frontier % NS_PER_MINUTE, NS_PER_MINUTE - horizon % NS_PER_MINUTE
        )
        return changed

    def advance(self, frontier_ns: int, out: list[BarUpdate]) -> bool:
        """Move the frontier by the wall clock (already minus lateness); True if state changed."""
        if self.frontier_ns is not None and frontier_ns <= self.frontier_ns:
            return False
        return self.settle(frontier_ns, [set() for _ in self.books], out)

    def apply_source_bars(
        self, bars: list[SourceBar], clock_ns: int | None, result: SourceBarResult
    ) -> None:
        """Apply source bars of this symbol, adding their fates and bar updates to `result`."""
        self.quiet_until_wall_ns = 0
        revised: list[set[int]] = [set() for _ in self.books]
        latest: int | None = None
        for bar in bars:
            problem = bar.problem()
            future_limit = None if clock_ns is None else clock_ns + self.config.max_future_ns
            if problem is None and future_limit is not None and bar.open_time_ns > future_limit:
                problem = QuarantineReason.EVENT_TIME_IN_FUTURE
            if problem is not None:
                result.quarantined.append((bar, problem))
                continue
            scales = self._cover_scales(bar.price_scale, bar.quantity_scale)
            outcome = self._apply_source_bar(
                bar,
                power_of_ten(scales.price - bar.price_scale),
                power_of_ten(scales.quantity - bar.quantity_scale),
                revised,
            )
            if outcome == "too_late":
                result.too_late.append(bar)
                continue
            if outcome == "duplicate":
                result.duplicates += 1
            elif outcome == "replaced":
                result.replaced += 1
            else:
                result.accepted += 1
            # A source bar proves the source's clock reached its open time, not its close.
            if latest is None or bar.open_time_ns > latest:
                latest = bar.open_time_ns
        if latest is not None and (self.max_event_ns is None or latest > self.max_event_ns):
            self.max_event_ns = latest
            self.event_seen_wall_ns = clock_ns
        frontier = None if latest is None else latest - self.config.allowed_lateness_ns
        self.settle(frontier, revised, result.updates)

    def _apply_source_bar(
        self, bar: SourceBar, price_factor: int, quantity_factor: int, revised: list[set[int]]
    ) -> SourceBarFate:
        """Merge or replace one sound 1m source bar (values times the factors); return its fate."""
        minute_book = self.books[0]
        late_before = self.late_before_ns()
        start = bar.open_time_ns
        if late_before is not None and start < late_before:
            return "too_late"
        o, h, lo, c = (v * price_factor for v in (bar.open, bar.high, bar.low, bar.close))
        volume = bar.volume * quantity_factor
        # Yahoo bars carry no quote volume: estimate it at the typical price (H+L+C)/3, rounded
        # to the quote scale (no tie is possible when dividing by 3).
        whole, remainder = divmod(volume * (h + lo + c), 3)
        quote_volume = whole + (1 if remainder == 2 else 0)
        fields = (
            o,
            h,
            lo,
            c,
            start,
            SOURCE_OPEN_TRADE_ID,
            start + NS_PER_MINUTE - 1,
            SOURCE_CLOSE_TRADE_ID,
            volume,
            quote_volume,
            0,
        )
        existing = minute_book.bars.get(start)
        if existing is None or not existing.has_data:
            for book, book_revised in zip(self.books, revised, strict=True):
                book.merge(start, *fields, True, book_revised)  # taker-buy volumes unknown
            return "accepted"
        if existing.from_source and (
            (existing.open, existing.high, existing.low, existing.close, existing.volume)
            == (o, h, lo, c, volume)
        ):
            return "duplicate"
        # A changed source bar replaces the old one; higher timeframes cannot subtract the old
        # values, so they are rebuilt from their 1m bars, which must all still be retained.
        day_start = self.books[-1].bucket(start)
        if late_before is not None and day_start < late_before:
            return "too_late"
        minute_book.replace(BarAccumulator(start, *fields, True, True), revised[0])
        for book, book_revised in zip(self.books[1:], revised[1:], strict=True):
            rebuilt = book.children_rollup(minute_book, book.bucket(start))
            if rebuilt is not None:
                book.replace(rebuilt, book_revised)
        return "replaced"

    def take_forming(self, out: list[FormingBar]) -> None:
        """Name the bars of every timeframe that changed while forming since the last call."""
        for book in self.books:
            if book.forming_changed:
                book.take_forming(out)

    def forget_forming(self) -> None:
        """Forget which bars changed while forming (nobody takes this instrument's)."""
        for book in self.books:
            book.forming_changed.clear()

    def to_dict(self, with_finals: bool = True) -> dict[str, Any]:
        """Return the symbol's state as a JSON-able dict (final bars only if `with_finals`)."""
        return {
            "version": SNAPSHOT_VERSION,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "price_scale": None if self.scales is None else self.scales.price,
            "quantity_scale": None if self.scales is None else self.scales.quantity,
            "max_event_ns": self.max_event_ns,
            "event_seen_wall_ns": self.event_seen_wall_ns,
            "frontier_ns": self.frontier_ns,
            "order_key": None if self.order_key is None else list(self.order_key),
            "trade_ids": self.ids.to_dict(),
            "books": {book.spec.label: book.to_dict(with_finals) for book in self.books},
        }

    def take_final_rows(self) -> dict[str, list[list[Any]]]:
        """Return, per timeframe label, the final bars emitted or revised since the last call."""
        rows = {book.spec.label: book.take_final_rows() for book in self.books}
        return {label: changed for label, changed in rows.items() if changed}

    def add_final_rows(self, label: str, rows: list[list[Any]]) -> None:
        """Load saved final-bar rows of one timeframe (after `from_dict` of a head).

        A row saved by the float version (legacy_snapshots) is converted first; a row finer
        than the instrument raises its scales.
        """
        rows = [upgrade_row(row) if len(row) < len(ROW_FIELDS) else row for row in rows]
        for row in rows:
            self._cover_scales(int(row[-2]), int(row[-1]))
        for book in self.books:
            if book.spec.label == label:
                book.add_final_rows(rows)
                return
        raise ValueError(f"unknown timeframe label {label!r} in saved final bars")

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: EngineConfig) -> SymbolBars:
        """Rebuild a symbol saved by `to_dict`; ValueError for an unknown snapshot version.

        A head saved by the float version is converted to exact values (see legacy_snapshots).
        """
        if data.get("version") == LEGACY_SNAPSHOT_VERSION:
            data = upgrade_snapshot(data)
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported bar snapshot version {data.get('version')!r}")
        restored = cls(int(data["exchange"]), str(data["symbol"]), config)
        if data["price_scale"] is not None:
            restored._cover_scales(int(data["price_scale"]), int(data["quantity_scale"]))
        restored.max_event_ns = data["max_event_ns"]
        restored.event_seen_wall_ns = data.get("event_seen_wall_ns")
        restored.frontier_ns = data["frontier_ns"]
        order_key = data.get("order_key")
        if order_key is not None:
            restored.order_key = (int(order_key[0]), int(order_key[1]))
        elif restored.max_event_ns is not None:
            # A head saved before out-of-order counting: the latest event time is the best bound.
            restored.order_key = (restored.max_event_ns, -(2**63))
        restored.ids = TradeIdSet.from_dict(data["trade_ids"], config.max_id_intervals)
        flat_fill = restored.exchange in config.flat_fill_exchanges
        shared = restored.books[0].scales
        restored.books = tuple(
            TimeframeBook.from_dict(
                restored.exchange,
                restored.symbol,
                spec,
                flat_fill,
                data["books"][spec.label],
                shared,
            )
            for spec in TIMEFRAMES
        )
        return restored
