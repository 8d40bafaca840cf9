"""Trade runs in: proto conversion, quarantine of unsound trades, non-market exclusion, counts."""

from __future__ import annotations

import math

import pytest

from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import QuarantineReason, TradeRun, TradeRunError
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v1 import market_pb2

T0 = 1_700_000_040 * NS_PER_SECOND
USDM = market_pb2.EXCHANGE_BINANCE_USDM


def message(**columns: list[float] | list[int]) -> market_pb2.SymbolTrades:
    """Return a BTCUSDT `SymbolTrades` with the given columns."""
    return market_pb2.SymbolTrades(exchange=USDM, symbol="BTCUSDT", **columns)  # type: ignore[arg-type]


def test_run_from_proto_empty_optional_columns_mean_market_and_one_each() -> None:
    run = TradeRun.from_proto(
        message(trade_ids=[1, 2], prices=[1.0, 2.0], quantities=[3.0, 4.0], event_time_ns=[5, 6])
    )
    assert (run.types, run.trade_counts) == (None, None)
    assert run.trade_ids.tolist() == [1, 2]
    assert (run.exchange, run.symbol) == (USDM, "BTCUSDT")


def test_run_from_proto_mismatched_columns_raises() -> None:
    with pytest.raises(TradeRunError, match="prices"):
        TradeRun.from_proto(
            message(trade_ids=[1, 2], prices=[1.0], quantities=[3.0, 4.0], event_time_ns=[5, 6])
        )
    with pytest.raises(TradeRunError, match="types"):
        TradeRun.from_columns(USDM, "BTCUSDT", [1], [1.0], [1.0], [T0], types=[1, 1])


def test_unsound_trades_quarantined_with_reasons_not_built_into_bars() -> None:
    prices = [100.0, 0.0, -1.0, math.nan, math.inf, 101.0, 102.0, 103.0, 104.0]
    quantities = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, -2.0, math.nan, 1.0]
    run = TradeRun.from_columns(
        USDM,
        "BTCUSDT",
        list(range(1, 10)),
        prices,
        quantities,
        [T0 + i for i in range(9)],
    )
    engine = BarEngine()

    result = engine.apply_trades(run)

    assert (result.accepted, result.quarantined) == (2, 7)
    assert result.quarantined_trades is not None
    assert result.quarantined_trades.trades.trade_ids.tolist() == [2, 3, 4, 5, 6, 7, 8]
    assert (
        result.quarantined_trades.reasons.tolist()
        == [QuarantineReason.INVALID_PRICE] * 4 + [QuarantineReason.INVALID_QUANTITY] * 3
    )
    bars = {u.timeframe.label: u for u in engine.take_forming_updates()}
    assert (bars["1m"].low, bars["1m"].high, bars["1m"].trade_count) == (100.0, 104.0, 2)
    assert engine.apply_trades(run).duplicates == 9


def test_trade_far_ahead_of_wall_clock_quarantined() -> None:
    engine = BarEngine()
    engine.advance(T0)
    run = TradeRun.from_columns(
        USDM, "BTCUSDT", [1, 2], [10.0, 11.0], [1.0, 1.0], [T0, T0 + 10 * NS_PER_MINUTE]
    )
    result = engine.apply_trades(run)
    assert (result.accepted, result.quarantined) == (1, 1)
    assert result.quarantined_trades is not None
    assert result.quarantined_trades.reasons.tolist() == [QuarantineReason.EVENT_TIME_IN_FUTURE]
    # The bogus time did not move the watermark: the first minute is still forming.
    assert result.updates == []


def test_non_market_trades_excluded_from_bars_but_deduplicated() -> None:
    run = TradeRun.from_columns(
        USDM,
        "BTCUSDT",
        [1, 2, 3, 4, 5, 6],
        [10.0, 99.0, 98.0, 97.0, 11.0, 96.0],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        [T0 + i for i in range(6)],
        types=[
            market_pb2.TRADE_TYPE_MARKET,
            market_pb2.TRADE_TYPE_INSURANCE_FUND,
            market_pb2.TRADE_TYPE_ADL,
            market_pb2.TRADE_TYPE_OTHER,
            market_pb2.TRADE_TYPE_UNSPECIFIED,
            -1,
        ],
    )
    engine = BarEngine()

    result = engine.apply_trades(run)

    assert (result.accepted, result.non_market) == (2, 4)
    bars = {u.timeframe.label: u for u in engine.take_forming_updates()}
    assert (bars["1m"].high, bars["1m"].close, bars["1m"].volume) == (11.0, 11.0, 2.0)
    assert engine.apply_trades(run).duplicates == 6


def test_aggregated_trade_counts_sum_into_bar() -> None:
    run = TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_SPOT,
        "XRPETH",
        [7, 8],
        [1.5, 1.25],
        [2.0, 4.0],
        [T0, T0 + 1],
        trade_counts=[3, 5],
    )
    engine = BarEngine()
    engine.apply_trades(run)
    bar = next(u for u in engine.take_forming_updates() if u.timeframe.label == "1m")
    assert (bar.trade_count, bar.volume, bar.quote_volume, bar.vwap) == (8, 6.0, 8.0, 8.0 / 6.0)


def test_every_trade_counted_once_across_fates() -> None:
    engine = BarEngine()
    first = TradeRun.from_columns(USDM, "BTCUSDT", [1, 2], [1.0, 1.0], [1.0, 1.0], [T0, T0 + 1])
    engine.apply_trades(first)
    mixed = TradeRun.from_columns(
        USDM,
        "BTCUSDT",
        [2, 3, 4, 5],
        [1.0, 1.0, 0.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
        [T0 + 1, T0 + 2, T0 + 3, T0 + 4],
        types=[1, 2, 1, 1],
    )
    result = engine.apply_trades(mixed)
    assert (result.duplicates, result.non_market, result.quarantined, result.accepted) == (
        1,
        1,
        1,
        1,
    )
    assert result.too_late == 0


def test_apply_batch_message_applies_runs_and_source_bars() -> None:
    batch = market_pb2.TradeBatch(
        stream_id="collector-0",
        sequence=1,
        trades=[
            message(trade_ids=[1], prices=[5.0], quantities=[2.0], event_time_ns=[T0]),
        ],
        source_bars=[
            market_pb2.SourceBar(
                exchange=market_pb2.EXCHANGE_YAHOO,
                symbol="AAPL",
                timeframe=market_pb2.TIMEFRAME_1M,
                open_time_ns=T0 - T0 % NS_PER_MINUTE,
                open=1.0,
                high=2.0,
                low=0.5,
                close=1.5,
                volume=100.0,
            )
        ],
    )
    result = BarEngine().apply_batch(batch)
    assert [(r.symbol, r.accepted) for r in result.runs] == [("BTCUSDT", 1)]
    assert result.source_bars.accepted == 1
    assert result.updates == []
