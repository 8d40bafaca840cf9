"""Which batch's span each bar update came from, so a published bar continues that batch's trace.

A bar published after a group commit carries the context of the "bars.apply_batch" span of
the batch that produced its update (finalised or revised it); a bar the clock finalised, and
a forming bar, carry the span of its instrument's last applied batch. The commit span is a trace of its own,
linked to the batches it made durable. Nothing is kept while no span context is valid (no
incoming context and no exporter), and what is kept is per bar and per batch, never per trade.
"""

from __future__ import annotations

from opentelemetry.trace import Link, SpanContext

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.batch_validation import CheckedBatch
from tickmesh.core.timeframes import from_proto
from tickmesh.core.tracing import inject_span_context, links_to
from tickmesh.v2 import market_pb2

UpdateKey = tuple[int, str, str, int]  # exchange enum, symbol, timeframe label, open time in µs
InstrumentKey = tuple[int, str]  # exchange enum, symbol
BarTraces = dict[UpdateKey, SpanContext]
# A commit span links at most this many batches (the SDK's default link limit).
MAX_COMMIT_LINKS = 128


def update_key(update: BarUpdate) -> UpdateKey:
    """The key a commit gives an update (and its change id)."""
    return (update.exchange, update.symbol, update.timeframe.label, update.open_time_ns // 1000)


class BatchTraces:
    """Apply-span contexts per pending update, per symbol, and per batch since the last commit."""

    def __init__(self) -> None:
        self._updates: BarTraces = {}
        self._symbols: dict[InstrumentKey, SpanContext] = {}
        self._batches: list[SpanContext] = []

    def note(self, context: SpanContext, checked: CheckedBatch, updates: list[BarUpdate]) -> None:
        """Remember that `checked`, traced by `context`, produced `updates`."""
        if not context.is_valid:
            return
        if len(self._batches) < MAX_COMMIT_LINKS:
            self._batches.append(context)
        for run in checked.runs:
            self._symbols[(run.exchange, run.symbol)] = context
        for bar in checked.source_bars:
            self._symbols[(bar.exchange, bar.symbol)] = context
        for update in updates:
            self._updates[update_key(update)] = context

    def take_links(self) -> list[Link]:
        """Links to the batches applied since the last call (for the next commit span)."""
        links = links_to(self._batches)
        self._batches = []
        return links

    def take(self, updates: list[BarUpdate]) -> BarTraces:
        """The span context of each update about to be committed (forgotten here)."""
        if not self._symbols:
            return {}
        traces: BarTraces = {}
        for update in updates:
            key = update_key(update)
            context = self._updates.pop(key, None) or self._symbols.get(
                (update.exchange, update.symbol)
            )
            if context is not None:
                traces[key] = context
        return traces

    def stamp_forming(self, bars: list[market_pb2.Bar]) -> None:
        """Write the span of each forming bar's symbol's last batch into its trace_context."""
        if not self._symbols:
            return
        for bar in bars:
            context = self._symbols.get((bar.exchange, bar.symbol))
            if context is not None:
                inject_span_context(bar.trace_context, context)


def stamp_bars(bars: list[market_pb2.Bar], traces: BarTraces) -> None:
    """Write each bar's span context into its trace_context."""
    if not traces:
        return
    for bar in bars:
        label = from_proto(bar.timeframe).label
        context = traces.get((bar.exchange, bar.symbol, label, bar.open_time_ns // 1000))
        if context is not None:
            inject_span_context(bar.trace_context, context)
