"""Trade runs in: proto conversion, quarantine of unsound trades, non-market exclusion, counts."""

from __future__ import annotations

import pytest

from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import QuarantineReason, TradeRun, TradeRunError
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v2 import market_pb2

from .kline_helpers import decimal_run

T0 = 1_700_000_040 * NS_PER_SECOND
USDM = market_pb2.EXCHANGE_BINANCE_USDM


def message(**columns: list[int] | int) -> market_pb2.SymbolTrades:
    """Return a BTCUSDT `SymbolTrades` with the given columns."""
    return market_pb2.SymbolTrades(exchange=USDM, symbol="BTCUSDT", **columns)  # type: ignore[arg-type]


def test_run_from_proto_empty_optional_columns_mean_market_one_each_sides_unknown() -> None:
    run = TradeRun.from_proto(
        message(
            trade_ids=[1, 2],
            prices=[10, 20],
            quantities=[3, 4],
            event_time_ns=[5, 6],
            price_scale=1,
            quantity_scale=3,
        )
    )
    assert (run.types, run.trade_counts, run.sides) == (None, None, None)
    assert run.trade_ids.tolist() == [1, 2]
    assert (run.exchange, run.symbol) == (USDM, "BTCUSDT")
    assert (run.prices.tolist(), run.price_scale, run.quantity_scale) == ([10, 20], 1, 3)


def test_run_from_proto_mismatched_columns_raises() -> None:
    with pytest.raises(TradeRunError, match="prices"):
        TradeRun.from_proto(
            message(trade_ids=[1, 2], prices=[1], quantities=[3, 4], event_time_ns=[5, 6])
        )
    with pytest.raises(TradeRunError, match="sides"):
        TradeRun.from_proto(
            message(trade_ids=[1, 2], prices=[1, 2], quantities=[3, 4], event_time_ns=[5, 6],
                    sides=[1])
        )  # fmt: skip
    with pytest.raises(TradeRunError, match="types"):
        TradeRun.from_columns(USDM, "BTCUSDT", [1], [1], [1], [T0], types=[1, 1])


def test_run_of_floats_or_bad_scale_refused() -> None:
    with pytest.raises(TradeRunError, match="integer mantissas"):
        TradeRun.from_columns(USDM, "BTCUSDT", [1], [1.5], [1], [T0])
    with pytest.raises(TradeRunError, match=r"price_scale: 19 is outside 0\.\.18"):
        TradeRun.from_columns(USDM, "BTCUSDT", [1], [1], [1], [T0], price_scale=19)


def test_unsound_trades_quarantined_with_reasons_not_built_into_bars() -> None:
    prices = [1000, 0, -10, 1010, 1020, 1030, 1040]
    quantities = [1, 1, 1, 0, -2, 1, 1]
    run = TradeRun.from_columns(
        USDM, "BTCUSDT", list(range(1, 8)), prices, quantities, [T0 + i for i in range(7)],
        price_scale=1,
    )  # fmt: skip
    engine = BarEngine()

    result = engine.apply_trades(run)

    assert (result.accepted, result.quarantined) == (3, 4)
    assert result.quarantined_trades is not None
    quarantined = result.quarantined_trades.trades
    assert quarantined.trade_ids.tolist() == [2, 3, 4, 5]
    assert (quarantined.prices.tolist(), quarantined.price_scale) == ([0, -10, 1010, 1020], 1)
    assert (
        result.quarantined_trades.reasons.tolist()
        == [QuarantineReason.INVALID_PRICE] * 2 + [QuarantineReason.INVALID_QUANTITY] * 2
    )
    bar = {u.timeframe.label: u for u in engine.take_forming_updates()}["1m"].to_proto()
    assert (bar.low, bar.high, bar.volume, bar.trade_count) == ("100", "104", "3", 3)
    assert engine.apply_trades(run).duplicates == 7


def test_trade_far_ahead_of_wall_clock_quarantined() -> None:
    engine = BarEngine()
    engine.advance(T0)
    run = TradeRun.from_columns(
        USDM, "BTCUSDT", [1, 2], [10, 11], [1, 1], [T0, T0 + 10 * NS_PER_MINUTE]
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
        [10, 99, 98, 97, 11, 96],
        [1, 1, 1, 1, 1, 1],
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
    assert (bars["1m"].high, bars["1m"].close, bars["1m"].volume) == (11, 11, 2)
    assert engine.apply_trades(run).duplicates == 6


def test_aggregated_trade_counts_and_taker_buys_sum_into_bar() -> None:
    buy, sell = market_pb2.AGGRESSOR_SIDE_BUY, market_pb2.AGGRESSOR_SIDE_SELL
    run = decimal_run(
        market_pb2.EXCHANGE_BINANCE_SPOT, "XRPETH", [7, 8, 9], ["1.5", "1.25", "0.1"],
        ["2", "4", "0.3"], [T0, T0 + 1, T0 + 2], trade_counts=[3, 5, 1], sides=[buy, sell, buy],
    )  # fmt: skip
    engine = BarEngine()
    engine.apply_trades(run)
    update = next(u for u in engine.take_forming_updates() if u.timeframe.label == "1m")
    bar = update.to_proto()
    assert (bar.trade_count, bar.volume, bar.quote_volume) == (9, "6.3", "8.03")
    assert (bar.taker_buy_volume, bar.taker_buy_quote_volume) == ("2.3", "3.03")
    assert update.vwap == 8.03 / 6.3


def test_trades_without_sides_leave_taker_buy_volumes_unknown() -> None:
    engine = BarEngine()
    engine.apply_trades(decimal_run(USDM, "BTCUSDT", [1], ["5"], ["2"], [T0]))
    bar = next(u for u in engine.take_forming_updates() if u.timeframe.label == "1m").to_proto()
    assert not bar.HasField("taker_buy_volume")
    assert not bar.HasField("taker_buy_quote_volume")


def test_runs_at_other_scales_sum_exactly_at_the_finest() -> None:
    engine = BarEngine()
    buy = market_pb2.AGGRESSOR_SIDE_BUY
    engine.apply_trades(decimal_run(USDM, "BTCUSDT", [1], ["61700.8"], ["0.1"], [T0], sides=[buy]))
    # Finer than the state: every held bar is multiplied up (the rare path).
    engine.apply_trades(
        decimal_run(USDM, "BTCUSDT", [2], ["61700.85"], ["0.0005"], [T0 + 1], sides=[buy])
    )
    # Coarser than the state: the run is multiplied up.
    engine.apply_trades(decimal_run(USDM, "BTCUSDT", [3], ["61701"], ["2"], [T0 + 2], sides=[buy]))
    bars = {u.timeframe.label: u.to_proto() for u in engine.take_forming_updates()}
    for bar in bars.values():
        assert (bar.open, bar.high, bar.low, bar.close) == ("61700.8", "61701", "61700.8", "61701")
        assert (bar.volume, bar.taker_buy_volume) == ("2.1005", "2.1005")
        assert bar.quote_volume == "129602.930425"  # 6170.08 + 30.850425 + 123402
        assert bar.taker_buy_quote_volume == bar.quote_volume


def test_run_whose_sums_could_overflow_int64_is_summed_as_python_ints() -> None:
    engine = BarEngine()
    price, quantity = 9 * 10**17, 9 * 10**17  # each fits int64, their product does not
    run = TradeRun.from_columns(
        USDM, "BTCUSDT", [1, 2], [price, price], [quantity, quantity], [T0, T0 + 1],
        sides=[market_pb2.AGGRESSOR_SIDE_BUY] * 2, price_scale=2, quantity_scale=2,
    )  # fmt: skip
    engine.apply_trades(run)
    bar = next(u for u in engine.take_forming_updates() if u.timeframe.label == "1d")
    assert bar.quote_volume == bar.taker_buy_quote_volume == 2 * price * quantity
    assert bar.volume == 2 * quantity


def test_same_symbol_on_two_venues_is_two_instruments() -> None:
    engine = BarEngine()
    spot = market_pb2.EXCHANGE_BINANCE_SPOT
    engine.apply_trades(decimal_run(USDM, "BTCUSDT", [1], ["61700.8"], ["0.002"], [T0]))
    engine.apply_trades(decimal_run(spot, "BTCUSDT", [1], ["61712.34"], ["0.00012"], [T0]))
    minutes = {
        (u.exchange, u.symbol): u.to_proto()
        for u in engine.take_forming_updates()
        if u.timeframe.label == "1m"
    }
    assert minutes[(USDM, "BTCUSDT")].close == "61700.8"
    assert minutes[(spot, "BTCUSDT")].close == "61712.34"
    assert sorted(engine.symbols()) == [(spot, "BTCUSDT"), (USDM, "BTCUSDT")]


def test_every_trade_counted_once_across_fates() -> None:
    engine = BarEngine()
    first = TradeRun.from_columns(USDM, "BTCUSDT", [1, 2], [1, 1], [1, 1], [T0, T0 + 1])
    engine.apply_trades(first)
    mixed = TradeRun.from_columns(
        USDM,
        "BTCUSDT",
        [2, 3, 4, 5],
        [1, 1, 0, 1],
        [1, 1, 1, 1],
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
            message(trade_ids=[1], prices=[5], quantities=[2], event_time_ns=[T0]),
        ],
        source_bars=[
            market_pb2.SourceBar(
                exchange=market_pb2.EXCHANGE_YAHOO,
                symbol="AAPL",
                timeframe=market_pb2.TIMEFRAME_1M,
                open_time_ns=T0 - T0 % NS_PER_MINUTE,
                open="1",
                high="2",
                low="0.5",
                close="1.5",
                volume="100",
            )
        ],
    )
    result = BarEngine().apply_batch(batch)
    assert [(r.symbol, r.accepted) for r in result.runs] == [("BTCUSDT", 1)]
    assert result.source_bars.accepted == 1
    assert result.updates == []
