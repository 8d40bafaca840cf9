"""IndicatorWindow against TA-Lib: the regression reference, batch TA-Lib on long walks, revisions, rejections."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest
import talib
from talib._ta_lib import MA_Type

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.indicators import IndicatorWindow, RevisionOutOfRangeError
from tickmesh.analytics.results import Indicators
from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.v2 import analytics_pb2, market_pb2

from .domain_helpers import BTCUSDT_USDM, TEST

TOLERANCE = 1e-9
NS_PER_DAY = 86_400_000_000_000
Walk = Callable[[int, int], list[BarInput]]
Series = npt.NDArray[np.float64]


def feed(bars: Sequence[BarInput], capacity: int = 320) -> list[Indicators]:
    """Feed bars one at a time and return each bar's indicators."""
    window = IndicatorWindow(TEST, 1, capacity)
    out: list[Indicators] = []
    for bar in bars:
        update = window.update(bar)
        assert update.rejection is None
        out.extend(update.indicators)
    return out


def session_vwap(bars: Sequence[BarInput]) -> Series:
    """Reference VWAP: cumulative typical price x volume over volume within each UTC day."""
    out = np.full(len(bars), np.nan)
    pv = volume = 0.0
    day = None
    for index, bar in enumerate(bars):
        if bar.open_time_ns // NS_PER_DAY != day:
            day, pv, volume = bar.open_time_ns // NS_PER_DAY, 0.0, 0.0
        pv += (bar.high + bar.low + bar.close) / 3.0 * bar.volume
        volume += bar.volume
        if volume > 0:
            out[index] = pv / volume
    return out


def batch(bars: Sequence[BarInput]) -> dict[str, Series]:
    """TA-Lib batch results over the whole history, by Indicators field name."""
    high = np.array([bar.high for bar in bars])
    low = np.array([bar.low for bar in bars])
    close = np.array([bar.close for bar in bars])
    volume = np.array([bar.volume for bar in bars])
    macd, signal, histogram = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, MA_Type.SMA)
    slow_k, slow_d = talib.STOCH(high, low, close, 14, 3, MA_Type.SMA, 3, MA_Type.SMA)
    return {
        "rsi": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_histogram": histogram,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "sma_20": talib.SMA(close, 20),
        "sma_50": talib.SMA(close, 50),
        "sma_100": talib.SMA(close, 100),
        "sma_200": talib.SMA(close, 200),
        "ema_12": talib.EMA(close, 12),
        "ema_26": talib.EMA(close, 26),
        "ema_50": talib.EMA(close, 50),
        "vwap": session_vwap(bars),
        "stoch_k": slow_k,
        "stoch_d": slow_d,
        "atr": talib.ATR(high, low, close, 14),
        "adx": talib.ADX(high, low, close, 14),
        "volume_sma": talib.SMA(volume, 20),
    }


def column(results: Sequence[Indicators], name: str) -> Series:
    """One indicator over the results, None as NaN (to line up with TA-Lib's warm-up)."""
    values = [getattr(result, name) for result in results]
    assert all(value is None or math.isfinite(value) for value in values), name
    return np.array([np.nan if value is None else value for value in values])


def assert_matches_batch(results: Sequence[Indicators], bars: Sequence[BarInput]) -> None:
    """Every indicator equals batch TA-Lib to TOLERANCE, with None exactly where TA-Lib has NaN."""
    expected = batch(bars)
    for name in INDICATOR_NAMES:
        np.testing.assert_allclose(
            column(results, name), expected[name], rtol=0, atol=TOLERANCE, err_msg=name
        )


def test_indicator_window_regtest_reference_matches_talib_081_outputs(
    reference_bars: list[BarInput], reference_outputs: list[dict[str, str]]
) -> None:
    results = feed(reference_bars)
    pairs = {
        "rsi": "rsi_14",
        "macd": "macd_12_26_9",
        "macd_signal": "macdsignal_12_26_9",
        "macd_histogram": "macdhist_12_26_9",
        "bb_upper": "bb_upper_20_2",
        "bb_middle": "bb_middle_20_2",
        "bb_lower": "bb_lower_20_2",
        "atr": "atr_14",
        "adx": "adx_14",
        "stoch_k": "stoch_slowk_14_3_3",
        "stoch_d": "stoch_slowd_14_3_3",
    }
    assert len(results) == len(reference_outputs) == 252
    for name, fixture_column in pairs.items():
        expected = np.array(
            [
                float(row[fixture_column]) if row[fixture_column] else np.nan
                for row in reference_outputs
            ]
        )
        np.testing.assert_allclose(
            column(results, name), expected, rtol=0, atol=TOLERANCE, err_msg=name
        )


def test_indicator_window_regtest_reference_first_values_at_documented_indices(
    reference_bars: list[BarInput],
) -> None:
    results = feed(reference_bars)
    first = {
        name: next(i for i, result in enumerate(results) if getattr(result, name) is not None)
        for name in ("rsi", "macd", "bb_upper", "atr", "adx", "stoch_k")
    }
    assert first == {"rsi": 14, "macd": 33, "bb_upper": 19, "atr": 14, "adx": 27, "stoch_k": 17}


def test_indicator_window_regtest_reference_matches_batch_talib(
    reference_bars: list[BarInput],
) -> None:
    assert_matches_batch(feed(reference_bars), reference_bars)


def test_indicator_window_random_walk_5000_bars_matches_batch_talib(make_random_walk: Walk) -> None:
    bars = make_random_walk(5000, 11)
    assert_matches_batch(feed(bars), bars)


def test_indicator_window_flat_start_and_tiny_prices_match_batch_talib(
    make_random_walk: Walk,
) -> None:
    # A flat opening stretch drives RSI/ADX through TA-Lib's zero guards; tiny prices test scale.
    walk = make_random_walk(600, 3)
    flat = [BarInput(i * 60_000_000_000, 1.0, 1.0, 1.0, 1.0, 0.0) for i in range(40)]
    moving = [replace(bar, open_time_ns=(40 + i) * 60_000_000_000) for i, bar in enumerate(walk)]
    tiny = [
        replace(
            bar,
            open=bar.open * 1e-6,
            high=bar.high * 1e-6,
            low=bar.low * 1e-6,
            close=bar.close * 1e-6,
        )
        for bar in flat + moving
    ]
    for bars in (flat + moving, tiny):
        assert_matches_batch(feed(bars), bars)


def test_indicator_window_revised_bar_matches_batch_on_revised_history(
    make_random_walk: Walk,
) -> None:
    bars = make_random_walk(700, 5)
    window = IndicatorWindow(TEST, 1)
    for bar in bars:
        window.update(bar)
    revised_at = 650
    revised = replace(
        bars[revised_at],
        close=bars[revised_at].close * 1.03,
        high=bars[revised_at].high * 1.03,
        revision=1,
    )
    update = window.update(revised)
    history = [*bars[:revised_at], revised, *bars[revised_at + 1 :]]
    assert [result.open_time_ns for result in update.indicators] == [
        bar.open_time_ns for bar in history[revised_at:]
    ]
    expected = batch(history)
    for offset, result in enumerate(update.indicators):
        for name in INDICATOR_NAMES:
            value = getattr(result, name)
            assert value is not None
            assert abs(value - expected[name][revised_at + offset]) <= TOLERANCE, name
    assert window.latest == update.indicators[-1]


def test_indicator_window_late_bar_inserted_matches_batch(make_random_walk: Walk) -> None:
    bars = make_random_walk(400, 8)
    late = 380
    window = IndicatorWindow(TEST, 1)
    for bar in bars[:late] + bars[late + 1 :]:
        window.update(bar)
    update = window.update(bars[late])
    assert len(update.indicators) == len(bars) - late
    expected = batch(bars)
    assert update.indicators[-1].rsi is not None
    assert abs(update.indicators[-1].rsi - expected["rsi"][-1]) <= TOLERANCE


@pytest.mark.parametrize(
    ("field", "value", "reason_part"),
    [
        ("close", math.nan, "non-finite"),
        ("high", math.inf, "non-finite"),
        ("low", 1e9, "below low"),
        ("volume", -1.0, "negative volume"),
    ],
)
def test_indicator_window_invalid_bar_rejected_with_reason_and_state_unchanged(
    make_random_walk: Walk, field: str, value: float, reason_part: str
) -> None:
    bars = make_random_walk(120, 2)
    window = IndicatorWindow(TEST, 1)
    for bar in bars[:100]:
        window.update(bar)
    base = bars[100]
    prices = {"open": base.open, "high": base.high, "low": base.low, "close": base.close}
    prices["volume"] = base.volume
    prices[field] = value
    bad = BarInput(
        base.open_time_ns,
        prices["open"],
        prices["high"],
        prices["low"],
        prices["close"],
        prices["volume"],
    )
    update = window.update(bad)
    assert update.indicators == ()
    assert update.rejection is not None
    assert reason_part in update.rejection
    results = [window.update(bar).indicators[0] for bar in bars[101:]]
    kept = bars[:100] + bars[101:]
    expected = batch(kept)
    assert results[-1].adx is not None
    assert abs(results[-1].adx - expected["adx"][-1]) <= TOLERANCE


def test_indicator_window_short_history_returns_none_not_nan(make_random_walk: Walk) -> None:
    results = feed(make_random_walk(19, 4))
    last = results[-1]
    assert last.sma_20 is None
    assert last.bb_upper is None
    assert last.macd is None
    assert last.adx is None
    assert last.rsi is not None
    assert all(value is None or math.isfinite(value) for value in last.values().values())


def test_indicator_window_previous_returns_each_kept_bar_as_appended(
    make_random_walk: Walk,
) -> None:
    """Kept results come back exactly: values, and None through each indicator's warm-up."""
    window = IndicatorWindow(TEST, market_pb2.TIMEFRAME_1M)
    appended = [window.append(bar) for bar in make_random_walk(300, 9)]
    for offset in (0, 1, 37, 150, 280, 299):
        assert window.previous(offset) == appended[-1 - offset]
    assert appended[-1 - 280].sma_200 is None
    assert window.previous(300) is None


def test_indicator_window_revision_older_than_ring_raises(make_random_walk: Walk) -> None:
    bars = make_random_walk(260, 6)
    window = IndicatorWindow(TEST, 1, capacity=200)
    for bar in bars:
        window.update(bar)
    with pytest.raises(RevisionOutOfRangeError):
        window.update(replace(bars[10], revision=1))


def test_indicator_window_revision_within_small_ring_matches_batch(make_random_walk: Walk) -> None:
    bars = make_random_walk(900, 9)
    window = IndicatorWindow(TEST, 1, capacity=200)
    for bar in bars:
        window.update(bar)
    oldest_kept = len(bars) - 200
    revised = replace(bars[oldest_kept], close=bars[oldest_kept].close * 0.99, revision=1)
    update = window.update(revised)
    history = [*bars[:oldest_kept], revised, *bars[oldest_kept + 1 :]]
    expected = batch(history)
    assert len(update.indicators) == 200
    assert update.indicators[-1].ema_50 is not None
    assert abs(update.indicators[-1].ema_50 - expected["ema_50"][-1]) <= TOLERANCE
    assert update.indicators[-1].sma_200 is not None
    assert abs(update.indicators[-1].sma_200 - expected["sma_200"][-1]) <= TOLERANCE


def test_vwap_new_utc_day_resets_session() -> None:
    hour = 3_600_000_000_000
    bars = [
        BarInput(NS_PER_DAY - hour, 10.0, 12.0, 8.0, 10.0, 5.0),
        BarInput(NS_PER_DAY, 20.0, 23.0, 20.0, 20.0, 2.0),
        BarInput(NS_PER_DAY + hour, 30.0, 30.0, 27.0, 30.0, 1.0),
    ]
    results = feed(bars)
    assert results[0].vwap == pytest.approx(10.0)
    assert results[1].vwap == pytest.approx(21.0)
    assert results[2].vwap == pytest.approx((21.0 * 2 + 29.0) / 3)


def test_vwap_zero_volume_session_is_none() -> None:
    results = feed([BarInput(0, 5.0, 5.0, 5.0, 5.0, 0.0)])
    assert results[0].vwap is None


def test_indicators_to_proto_leaves_missing_fields_unset() -> None:
    indicators = Indicators(BTCUSDT_USDM, 2, 123, rsi=55.5, sma_20=None)
    message = indicators.to_proto()
    assert (message.exchange, message.symbol) == (market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT")
    assert message.timeframe == 2
    assert message.open_time_ns == 123
    assert message.HasField("rsi")
    assert message.rsi == 55.5
    assert not message.HasField("sma_20")


def test_indicators_dataclass_fields_mirror_proto_fields() -> None:
    proto = [
        field.name
        for field in analytics_pb2.Indicators.DESCRIPTOR.fields
        if field.name not in {"symbol", "exchange", "timeframe", "open_time_ns"}
    ]
    assert list(INDICATOR_NAMES) == proto
