"""InstrumentAnalytics: one call per final bar gives indicators, features and quality together."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest

from tickmesh.analytics.bars import BarInput, bar_from_proto, rejection_reason
from tickmesh.analytics.engine import AnalyticsEngine
from tickmesh.analytics.features import FEATURE_VERSION
from tickmesh.analytics.pipeline import InstrumentAnalytics
from tickmesh.analytics.quality import CHECK_CROSS_TIMEFRAME, CHECK_NON_FINITE
from tickmesh.core.instruments import InstrumentError
from tickmesh.core.timeframes import from_label
from tickmesh.v2 import market_pb2

from .domain_helpers import BTCUSDT_USDM, XRPETH_SPOT

Walk = Callable[[int, int], list[BarInput]]
MINUTE = 60_000_000_000


def test_instrument_analytics_new_bar_returns_one_of_each(make_random_walk: Walk) -> None:
    analytics = InstrumentAnalytics(BTCUSDT_USDM, from_label("1m"))
    bars = make_random_walk(60, 1)
    for bar in bars:
        result = analytics.on_bar(bar, bar.open_time_ns + MINUTE)
    assert result.rejection is None
    assert len(result.indicators) == len(result.features) == 1
    assert result.indicators[0].open_time_ns == bars[-1].open_time_ns
    assert result.features[0].feature_version == FEATURE_VERSION
    assert result.features[0].values["return_20"] == bars[-1].close / bars[-21].close - 1.0
    assert result.quality.score == 1.0


def test_instrument_analytics_revision_recomputes_later_bars(make_random_walk: Walk) -> None:
    bars = make_random_walk(80, 2)
    analytics = InstrumentAnalytics(BTCUSDT_USDM, from_label("1m"))
    for bar in bars:
        analytics.on_bar(bar, bar.open_time_ns + MINUTE)
    revised = replace(bars[75], close=bars[75].close * 1.01, revision=1)
    result = analytics.on_bar(revised, bars[-1].open_time_ns + MINUTE)
    assert [f.open_time_ns for f in result.features] == [b.open_time_ns for b in bars[75:]]
    fresh = InstrumentAnalytics(BTCUSDT_USDM, from_label("1m"))
    for bar in [*bars[:75], revised, *bars[76:]]:
        expected = fresh.on_bar(bar, bar.open_time_ns + MINUTE)
    assert result.features[-1].values == expected.features[-1].values
    assert result.indicators[-1] == expected.indicators[-1]


def test_instrument_analytics_invalid_bar_rejected_and_flagged(make_random_walk: Walk) -> None:
    bars = make_random_walk(30, 3)
    analytics = InstrumentAnalytics(BTCUSDT_USDM, from_label("1m"))
    for bar in bars[:-1]:
        analytics.on_bar(bar, bar.open_time_ns + MINUTE)
    result = analytics.on_bar(replace(bars[-1], close=float("nan")), bars[-1].open_time_ns + MINUTE)
    assert result.rejection is not None
    assert result.indicators == ()
    assert result.features == ()
    assert CHECK_NON_FINITE in result.quality.checks_failed
    assert [a.check for a in result.anomalies] == [CHECK_NON_FINITE]


def test_instrument_analytics_five_minute_bar_checked_against_minute_stream(
    xrpeth_minute_bars: list[BarInput], xrpeth_five_minute_bars: list[BarInput]
) -> None:
    minutes = InstrumentAnalytics(XRPETH_SPOT, from_label("1m"))
    fives = InstrumentAnalytics(XRPETH_SPOT, from_label("5m"))
    five_by_time = {bar.open_time_ns: bar for bar in xrpeth_five_minute_bars}
    for minute in xrpeth_minute_bars[:300]:
        minutes.on_bar(minute, minute.open_time_ns + MINUTE)
        bucket = minute.open_time_ns - minute.open_time_ns % (5 * MINUTE)
        if minute.open_time_ns == bucket + 4 * MINUTE:
            span = minutes.minute_bars_between(bucket, bucket + 5 * MINUTE)
            result = fives.on_bar(five_by_time[bucket], bucket + 5 * MINUTE, minute_bars=span)
            assert result.anomalies == ()
    assert CHECK_CROSS_TIMEFRAME in result.quality.checks_passed


def test_bar_from_proto_copies_every_field() -> None:
    message = market_pb2.Bar(
        open_time_ns=5,
        open="1",
        high="2.0",
        low="0.5",
        close="1.5",
        volume="3",
        quote_volume="4.5",
        trade_count=7,
        final=True,
        revision=2,
        duplicate_trades=3,
        out_of_order_trades=4,
        taker_buy_volume="1.25",
    )
    expected = BarInput(5, 1.0, 2.0, 0.5, 1.5, 3.0, 4.5, 7, True, 2, 3, 4, taker_buy_volume=1.25)
    assert bar_from_proto(message) == expected
    message.ClearField("taker_buy_volume")
    assert math.isnan(bar_from_proto(message).taker_buy_volume)


def test_bar_from_proto_decimal_strings_become_the_nearest_float() -> None:
    # 0.1 + 0.2 in floats is 0.30000000000000004; the exchange's "0.3" must read as 0.3.
    message = market_pb2.Bar(
        open="61700.8", high="61700.8", low="0.3", close="0.3", volume="203.143"
    )
    bar = bar_from_proto(message)
    assert (bar.open, bar.low, bar.volume, bar.quote_volume) == (61700.8, 0.3, 203.143, 0.0)
    assert bar.defect is None


def test_bar_from_proto_unreadable_value_is_a_defect_naming_the_field() -> None:
    message = market_pb2.Bar(
        open_time_ns=7, open="1", high="x1", low="1", close="", volume="2", quote_volume="2"
    )
    bar = bar_from_proto(message)
    assert bar.defect == "high: 'x1' is not a decimal; close: '' is not a decimal"
    assert math.isnan(bar.high)
    assert math.isnan(bar.close)
    assert bar.open == 1.0
    assert rejection_reason(bar) == bar.defect
    analytics = InstrumentAnalytics(BTCUSDT_USDM, from_label("1m"))
    result = analytics.on_bar(bar, 7 + MINUTE)
    assert result.rejection == bar.defect
    assert result.indicators == ()
    assert CHECK_NON_FINITE in result.quality.checks_failed


def test_engine_keys_streams_by_instrument_and_refuses_bars_without_one() -> None:
    engine = AnalyticsEngine()
    spot = market_pb2.Bar(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol="BTCUSDT",
        timeframe=market_pb2.TIMEFRAME_1M,
    )
    usdm = market_pb2.Bar(
        exchange=market_pb2.EXCHANGE_BINANCE_USDM,
        symbol="BTCUSDT",
        timeframe=market_pb2.TIMEFRAME_1M,
    )
    assert engine.key_of(usdm) == (BTCUSDT_USDM, market_pb2.TIMEFRAME_1M)
    assert engine.key_of(spot) != engine.key_of(usdm)
    assert engine.key_of(usdm)[0] is engine.key_of(usdm)[0]  # validated once, then reused
    with pytest.raises(InstrumentError, match="exchange is unspecified"):
        engine.key_of(market_pb2.Bar(symbol="BTCUSDT"))
    with pytest.raises(InstrumentError, match="symbol"):
        engine.key_of(market_pb2.Bar(exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="btc/usdt"))
