"""Which batch span each committed bar continues: the batch that produced it, else its symbol's last."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanContext

from tickmesh.bars.batch_traces import BatchTraces, stamp_bars, update_key
from tickmesh.bars.batch_validation import check_batch
from tickmesh.bars.engine import BarEngine
from tickmesh.core.sharding import Shard
from tickmesh.core.tracing import TRACEPARENT, get_tracer, traceparent
from tickmesh.v2 import market_pb2

MINUTE_NS = 60 * 1_000_000_000
START_NS = 1_704_153_600 * 1_000_000_000  # 2024-01-02 00:00 UTC


def _batch(sequence: int, minute: int, trade_id: int) -> market_pb2.TradeBatch:
    at = START_NS + minute * MINUTE_NS + 1_000_000_000
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol="TRACEUSDT",
        trade_ids=[trade_id],
        prices=[100 + minute],
        quantities=[1],
        event_time_ns=[at],
        receive_time_ns=[at],
    )
    return market_pb2.TradeBatch(stream_id="s", sequence=sequence, trades=[run])


def _span_context(provider: TracerProvider, name: str) -> SpanContext:
    with get_tracer(provider).start_as_current_span(name) as span:
        return span.get_span_context()


def test_committed_bar_continues_the_batch_that_finalised_it() -> None:
    provider = TracerProvider()
    engine = BarEngine()
    traces = BatchTraces()
    first, second = _span_context(provider, "first"), _span_context(provider, "second")
    pending = []
    for context, batch in ((first, _batch(1, 0, 1)), (second, _batch(2, 2, 2))):
        checked = check_batch(batch, Shard())
        updates = [u for run in checked.runs for u in engine.apply_trades(run).updates]
        traces.note(context, checked, updates)
        pending += updates
    finals = [u for u in pending if u.final and u.timeframe.label == "1m"]
    assert [u.open_time_ns for u in finals] == [START_NS]  # minute 0, finalised by batch 2

    bars = [u.to_proto(change_id=i + 1) for i, u in enumerate(finals)]
    stamp_bars(bars, traces.take(finals))
    assert bars[0].trace_context[TRACEPARENT] == traceparent(second)
    assert [link.context for link in traces.take_links()] == [first, second]
    assert traces.take_links() == []


def test_bar_the_clock_finalised_continues_the_symbols_last_batch() -> None:
    provider = TracerProvider()
    engine = BarEngine()
    traces = BatchTraces()
    context = _span_context(provider, "only")
    checked = check_batch(_batch(1, 0, 1), Shard())
    produced = engine.apply_trades(checked.runs[0]).updates
    traces.note(context, checked, produced)
    by_clock = engine.advance(START_NS + 10 * MINUTE_NS)
    assert any(u.final and u.open_time_ns == START_NS for u in by_clock)
    assert traces.take(by_clock) == {update_key(u): context for u in by_clock}


def test_forming_bar_continues_its_symbols_last_batch() -> None:
    provider = TracerProvider()
    traces = BatchTraces()
    context = _span_context(provider, "latest")
    traces.note(context, check_batch(_batch(1, 0, 1), Shard()), [])
    forming = [
        market_pb2.Bar(
            exchange=market_pb2.EXCHANGE_SIMULATOR,
            symbol="TRACEUSDT",
            timeframe=market_pb2.TIMEFRAME_1M,
        ),
        # The same symbol on another venue is another instrument: not this batch's.
        market_pb2.Bar(
            exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
            symbol="TRACEUSDT",
            timeframe=market_pb2.TIMEFRAME_1M,
        ),
    ]
    traces.stamp_forming(forming)
    assert forming[0].trace_context[TRACEPARENT] == traceparent(context)
    assert dict(forming[1].trace_context) == {}


def test_nothing_is_kept_for_untraced_batches() -> None:
    traces = BatchTraces()
    checked = check_batch(_batch(1, 0, 1), Shard())
    updates = BarEngine().apply_trades(checked.runs[0]).updates
    traces.note(SpanContext(0, 0, is_remote=False), checked, updates)
    assert traces.take(updates) == {}
    assert traces.take_links() == []
