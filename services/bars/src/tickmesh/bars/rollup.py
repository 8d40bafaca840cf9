"""The bars of one symbol on one timeframe: forming bars, finality, flat bars, revisions, retention.

Values are integer mantissas at the instrument's `Scales`, shared by its six books and raised
for all of them at once when a finer input arrives (see SymbolBars.rescale_to).
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from tickmesh.bars.bar_state import NEVER_FINAL, BarAccumulator, BarUpdate, rescale_row
from tickmesh.bars.forming_bars import FormingBar
from tickmesh.bars.forming_throttle import BarKey
from tickmesh.core.decimals import power_of_ten
from tickmesh.core.timeframes import TimeframeSpec
from tickmesh.v2 import market_pb2


class Scales:
    """The price and quantity scale of one instrument's bars (mutable: a finer input raises them)."""

    __slots__ = ("price", "quantity")

    def __init__(self, price: int = 0, quantity: int = 0) -> None:
        self.price = price
        self.quantity = quantity


_OPEN = attrgetter("open_time_ns")


class TimeframeBook:
    """Bars of one (exchange, symbol, timeframe) keyed by open time.

    Every bucket before `emitted_until` has been finalized (emitted final, or left empty when the
    symbol had not traded yet or the exchange prints no flat bars); buckets from `emitted_until` on
    are forming. Final bars stay in `bars` until retention prunes them, so late trades can revise
    them. A merge into a final bucket is a revision, emitted once per batch by `emit_revisions`.
    """

    __slots__ = (
        "bars",
        "duration_ns",
        "emitted_from",
        "emitted_until",
        "exchange",
        "finals_changed",
        "flat_fill",
        "forming_changed",
        "forming_key",
        "lowered",
        "newest_key",
        "prev_close",
        "pruned_until",
        "scales",
        "spec",
        "symbol",
    )

    def __init__(
        self,
        exchange: int,
        symbol: str,
        spec: TimeframeSpec,
        flat_fill: bool,
        scales: Scales | None = None,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.scales = scales if scales is not None else Scales()
        self.spec = spec
        # The forming throttle's key, made once: it is asked for every changed forming bar.
        self.forming_key: BarKey = (exchange, symbol, spec.proto)
        self.duration_ns = spec.duration_ns
        self.flat_fill = flat_fill
        self.bars: dict[int, BarAccumulator] = {}
        # No key of `bars` is above it: the forming bars are found without a walk over the finals.
        self.newest_key: int | None = None
        self.emitted_until: int | None = None
        # Lowest bucket ever emitted final; None while nothing is final, so the forming range may
        # still grow backwards for trades that arrive out of order before the first final bar.
        self.emitted_from: int | None = None
        self.prev_close: int | None = None
        self.pruned_until: int | None = None
        self.forming_changed: set[int] = set()
        # Final bars emitted or revised since the last `take_final_rows` (incremental snapshots).
        self.finals_changed: set[int] = set()
        # Set when the forming range grew backwards: finalize must run even if the frontier did not move.
        self.lowered = False

    def bucket(self, time_ns: int) -> int:
        """Return the open time of the bucket holding `time_ns`."""
        return time_ns - time_ns % self.duration_ns

    def _touch(self, bucket: int, revised: set[int]) -> None:
        """Record that `bucket` changed: a revision if it is final, else a forming change."""
        until = self.emitted_until
        if until is None or bucket >= until:
            if until is None:
                self.emitted_until = bucket
                self.lowered = True
            self.forming_changed.add(bucket)
        elif self.emitted_from is None:
            self.emitted_until = bucket
            self.lowered = True
            self.forming_changed.add(bucket)
        else:
            revised.add(bucket)
        if self.pruned_until is not None and bucket < self.pruned_until:
            self.pruned_until = bucket

    def merge(
        self,
        minute_ns: int,
        open_: int,
        high: int,
        low: int,
        close: int,
        open_event_ns: int,
        open_trade_id: int,
        close_event_ns: int,
        close_trade_id: int,
        volume: int,
        quote_volume: int,
        trade_count: int,
        from_source: bool,
        revised: set[int],
        out_of_order_trades: int = 0,
        taker_buy_volume: int | None = None,
        taker_buy_quote_volume: int | None = None,
    ) -> None:
        """Merge the partial bar of one minute into the bucket holding that minute."""
        bucket = minute_ns - minute_ns % self.duration_ns
        bar = self.bars.get(bucket)
        if bar is None:
            self._put(
                BarAccumulator(
                    bucket,
                    open_,
                    high,
                    low,
                    close,
                    open_event_ns,
                    open_trade_id,
                    close_event_ns,
                    close_trade_id,
                    volume,
                    quote_volume,
                    trade_count,
                    True,
                    from_source,
                    out_of_order_trades=out_of_order_trades,
                    taker_buy_volume=taker_buy_volume,
                    taker_buy_quote_volume=taker_buy_quote_volume,
                )
            )
        else:
            bar.merge(
                open_,
                high,
                low,
                close,
                open_event_ns,
                open_trade_id,
                close_event_ns,
                close_trade_id,
                volume,
                quote_volume,
                trade_count,
                from_source,
                0,
                out_of_order_trades,
                taker_buy_volume,
                taker_buy_quote_volume,
            )
        until = self.emitted_until
        if until is not None and bucket >= until:
            self.forming_changed.add(bucket)
        else:
            self._touch(bucket, revised)

    def add_duplicates(self, minute_ns: int, count: int) -> None:
        """Count dropped duplicates of one minute into its forming bucket (the caller checks it forms)."""
        bucket = minute_ns - minute_ns % self.duration_ns
        bar = self.bars.get(bucket)
        if bar is not None:
            bar.add_duplicates(count)
            self.forming_changed.add(bucket)

    def replace(self, bar: BarAccumulator, revised: set[int]) -> None:
        """Put a rebuilt bar (with data) in place of the bucket's bar, keeping its revision count."""
        old = self.bars.get(bar.open_time_ns)
        bar.revision = NEVER_FINAL if old is None else old.revision
        self._put(bar)
        self._touch(bar.open_time_ns, revised)

    def rescale(self, price_factor: int, quantity_factor: int) -> None:
        """Multiply every held value up to finer scales (the caller updates the shared Scales)."""
        for bar in self.bars.values():
            bar.rescale(price_factor, quantity_factor)
        if self.prev_close is not None:
            self.prev_close *= price_factor

    def _update(self, bar: BarAccumulator, final: bool) -> BarUpdate:
        scales = self.scales
        return bar.to_update(
            self.exchange, self.symbol, self.spec, final, scales.price, scales.quantity
        )

    def _emit_final(self, bar: BarAccumulator, out: list[BarUpdate]) -> None:
        """Emit a bar's final version and note it for the next incremental snapshot."""
        out.append(self._update(bar, True))
        self.finals_changed.add(bar.open_time_ns)

    def emit_revisions(self, revised: set[int], out: list[BarUpdate]) -> None:
        """Emit each revised final bar once, then re-derive the flat bars that follow it."""
        until = self.emitted_until
        if until is None:  # nothing is final yet, so nothing can be revised
            return
        duration = self.duration_ns
        for bucket in sorted(revised):
            bar = self.bars[bucket]
            bar.revision += 1
            self._emit_final(bar, out)
            if self.emitted_from is None or bucket < self.emitted_from:
                self.emitted_from = bucket
            close = bar.close
            following = bucket + duration
            # Flat bars repeat the previous close, so a changed close ripples into the flats after it.
            while following < until:
                flat = self.bars.get(following)
                if flat is not None and flat.has_data:
                    break
                if flat is None:
                    if not self.flat_fill:
                        break
                    flat = BarAccumulator.flat(following, close)
                    self._put(flat)
                elif flat.close == close:
                    break
                else:
                    flat.set_flat(close)
                flat.revision += 1
                self._emit_final(flat, out)
                following += duration
            else:
                self.prev_close = close

    def finalize(self, frontier_ns: int, horizon_ns: int, out: list[BarUpdate]) -> None:
        """Emit every bucket that ends at or before the frontier as final (flat if it had no data).

        Flat bars are filled only from the retention horizon on: a symbol idle for longer (or a
        clock that jumps years ahead of replayed trades) must not emit millions of placeholders,
        and no trade could revise a bar that old anyway.
        """
        until = self.emitted_until
        self.lowered = False
        if until is None:
            return
        duration = self.duration_ns
        limit = frontier_ns - frontier_ns % duration
        if until >= limit:
            return
        fill_from = horizon_ns - horizon_ns % duration
        bucket = until
        while bucket < limit:
            bar = self.bars.get(bucket)
            fills = self.flat_fill and self.prev_close is not None
            if bar is not None and bar.has_data:
                self.prev_close = bar.close
            elif fills and bucket >= fill_from and self.prev_close is not None:
                bar = BarAccumulator.flat(bucket, self.prev_close)
                self._put(bar)
            else:
                # Nothing to fill here: jump to the next bar, or to where flat filling resumes.
                following = min((key for key in self.bars if bucket < key < limit), default=limit)
                bucket = min(following, fill_from) if fills and fill_from > bucket else following
                continue
            bar.revision = 0
            self.forming_changed.discard(bucket)
            self._emit_final(bar, out)
            if self.emitted_from is None:
                self.emitted_from = bucket
            bucket += duration
        self.emitted_until = limit

    def prune(self, horizon_ns: int) -> None:
        """Forget final bars that end at or before the retention horizon."""
        if self.emitted_until is None:
            return
        limit = min(horizon_ns - horizon_ns % self.duration_ns, self.emitted_until)
        start = self.pruned_until
        if start is not None and limit <= start:
            return
        if start is None or (limit - start) // self.duration_ns > len(self.bars):
            for key in [key for key in self.bars if key < limit]:
                del self.bars[key]
        else:
            for key in range(start, limit, self.duration_ns):
                self.bars.pop(key, None)
        # Pruned keys left in finals_changed are skipped by take_final_rows (a bucket that comes
        # back is emitted final, and noted, again), so they are dropped only once they outnumber
        # the bars: a book whose rows nobody takes would otherwise pay O(finals) per prune.
        if len(self.finals_changed) > 2 * len(self.bars) + 64:
            self.finals_changed = {key for key in self.finals_changed if key >= limit}
        self.pruned_until = limit

    def take_forming(self, out: list[FormingBar]) -> None:
        """Name the bars that changed while forming since the last call."""
        changed = self.forming_changed
        if len(changed) == 1:  # nearly always: one forming bar per book, six per trade
            out.append(FormingBar(self, changed.pop()))
            return
        out.extend(FormingBar(self, bucket) for bucket in sorted(changed))
        changed.clear()

    def _forming_bar(self, bucket: int) -> BarAccumulator | None:
        """The bar at `bucket` if it is still forming; None if it is final, pruned or unknown."""
        bar = self.bars.get(bucket)
        until = self.emitted_until
        if bar is None or until is None or bucket < until:
            return None
        return bar

    def forming_update(self, bucket: int) -> BarUpdate | None:
        """The forming update of the bar at `bucket`; None if it is final, pruned or unknown."""
        bar = self._forming_bar(bucket)
        return None if bar is None else self._update(bar, False)

    def forming_message(self, bucket: int) -> market_pb2.Bar | None:
        """The forming message of the bar at `bucket` (as `forming_update(bucket).to_proto()`);
        None if it is final, pruned or unknown."""
        bar = self._forming_bar(bucket)
        if bar is None:
            return None
        scales = self.scales
        return bar.forming_message(
            self.exchange, self.symbol, self.spec.proto, scales.price, scales.quantity
        )

    def children_rollup(self, minute_book: TimeframeBook, bucket: int) -> BarAccumulator | None:
        """Rebuild this timeframe's bar at `bucket` from the 1m bars with data, or None if none."""
        rebuilt: BarAccumulator | None = None
        minute = minute_book.duration_ns
        for child_time in range(bucket, bucket + self.duration_ns, minute):
            child = minute_book.bars.get(child_time)
            if child is None or not child.has_data:
                continue
            if rebuilt is None:
                rebuilt = BarAccumulator.flat(bucket, child.open)
            rebuilt.merge_bar(child)
        return rebuilt

    def take_final_rows(self) -> list[list[Any]]:
        """Return the rows of the final bars emitted or revised since the last call."""
        ps, qs = self.scales.price, self.scales.quantity
        rows = [
            self.bars[key].as_row(ps, qs) for key in sorted(self.finals_changed) if key in self.bars
        ]
        self.finals_changed.clear()
        return rows

    def to_dict(self, with_finals: bool = True) -> dict[str, Any]:
        """Return the book as a JSON-able dict (bars as rows of ROW_FIELDS).

        Without finals only the forming bars are included; the final ones then travel as rows
        from `take_final_rows` and come back through `add_final_rows`.
        """
        until = self.emitted_until
        bars: Iterable[BarAccumulator] = self.bars.values()
        if not with_finals and until is not None:
            bars = self._bars_from(until)
        return {
            "emitted_until": until,
            "emitted_from": self.emitted_from,
            "prev_close": self.prev_close,
            "pruned_until": self.pruned_until,
            "bars": [bar.as_row(self.scales.price, self.scales.quantity) for bar in bars],
        }

    def _put(self, bar: BarAccumulator) -> None:
        key = bar.open_time_ns
        self.bars[key] = bar
        if self.newest_key is None or key > self.newest_key:
            self.newest_key = key

    def _bars_from(self, start: int) -> list[BarAccumulator]:
        """The bars opening at or after `start`, oldest first.

        A head is written at every commit that changed its symbol, and a day's retention keeps
        ~1,500 final 1m bars behind one or two forming ones: so the buckets from `start` to
        the newest key are looked up, unless they outnumber the bars (a far-ahead key).
        """
        newest, duration = self.newest_key, self.duration_ns
        if newest is None or newest < start:
            return []
        if start % duration or (newest - start) // duration >= len(self.bars):
            return sorted((b for b in self.bars.values() if b.open_time_ns >= start), key=_OPEN)
        bars = self.bars
        return [bars[key] for key in range(start, newest + 1, duration) if key in bars]

    def add_final_rows(self, rows: Iterable[list[Any]]) -> None:
        """Load final bars saved as rows, skipping those pruned or not final by this book's state.

        Each row names its scales; a row saved before the instrument's scales grew is multiplied
        up (the caller first raises the scales to cover every row).
        """
        until = self.emitted_until
        pruned = self.pruned_until
        for row in rows:
            bar = BarAccumulator.from_row(self.at_book_scales(row))
            start = bar.open_time_ns
            if until is not None and start < until and (pruned is None or start >= pruned):
                self._put(bar)

    def at_book_scales(self, row: list[Any]) -> list[Any]:
        """Return a saved row (ROW_FIELDS) with its values at this book's scales."""
        row_price, row_quantity = int(row[-2]), int(row[-1])
        price, quantity = self.scales.price, self.scales.quantity
        if (row_price, row_quantity) == (price, quantity):
            return row
        if row_price > price or row_quantity > quantity:
            raise ValueError(f"saved bar of {self.symbol} is finer than its instrument's scales")
        return rescale_row(
            row, power_of_ten(price - row_price), power_of_ten(quantity - row_quantity)
        )

    @classmethod
    def from_dict(
        cls,
        exchange: int,
        symbol: str,
        spec: TimeframeSpec,
        flat_fill: bool,
        data: dict[str, Any],
        scales: Scales,
    ) -> TimeframeBook:
        """Rebuild a book saved by `to_dict` at `scales`; every forming bar counts as changed."""
        book = cls(exchange, symbol, spec, flat_fill, scales)
        book.emitted_until = data["emitted_until"]
        book.emitted_from = data["emitted_from"]
        book.prev_close = data["prev_close"]
        book.pruned_until = data["pruned_until"]
        for row in data["bars"]:
            book._put(BarAccumulator.from_row(book.at_book_scales(row)))
        until = book.emitted_until
        book.forming_changed = {key for key in book.bars if until is None or key >= until}
        return book
