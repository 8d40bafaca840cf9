"""Features from stored per-bar terms equal the same formulas evaluated on the raw window tail.

The reference below recomputes, with numpy over the bars' OHLCV, every feature that reads
bar_terms; the stored terms must give the same values on random walks, on real Binance
klines (with flats), on TA-Lib's reference series, and after revisions that rewind them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pytest

from tickmesh.analytics.bar_terms import divide, log
from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.bars_window import BarWindow, FloatArray
from tickmesh.analytics.features import feature_values
from tickmesh.analytics.indicators import IndicatorWindow

from .domain_helpers import TEST

Walk = Callable[[int, int], list[BarInput]]
_GARMAN_KLASS = 2.0 * math.log(2.0) - 1.0


def _std(values: FloatArray, ddof: int = 0) -> float:
    return float(np.std(values, ddof=ddof))


def _sqrt(value: float) -> float:
    return math.sqrt(value) if value >= 0.0 else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN (the feature is absent) when the denominator is not positive."""
    return numerator / denominator if denominator > 0.0 else math.nan


def _zscore_last(values: FloatArray) -> float:
    spread = _std(values)
    return (float(values[-1]) - float(values.mean())) / spread if spread > 0.0 else 0.0


def reference(window: BarWindow) -> dict[str, float]:
    """The term-based features of the newest bar from the OHLCV tail (61 bars); NaN where absent."""
    with np.errstate(all="ignore"):
        return _reference(window)


def _reference(window: BarWindow) -> dict[str, float]:
    o, h, lo, c = window.open[-61:], window.high[-61:], window.low[-61:], window.close[-61:]
    v, taker = window.volume[-61:], window.taker_buy_volume[-61:]
    r = np.diff(np.log(c))
    out: dict[str, float] = {}
    for n in (10, 20, 60):
        out[f"realized_vol_{n}"] = _std(r[-n:], ddof=1)
        out[f"log_return_{n}"] = float(np.log(c[-1]) - np.log(c[-1 - n]))
    log_hl, log_co = np.log(h / lo), np.log(c / o)
    parkinson = log_hl * log_hl
    garman_klass = 0.5 * parkinson - _GARMAN_KLASS * log_co * log_co
    rogers = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    for n in (10, 20):
        out[f"parkinson_vol_{n}"] = _sqrt(float(parkinson[-n:].mean()) / (4 * math.log(2)))
        out[f"garman_klass_vol_{n}"] = _sqrt(float(garman_klass[-n:].mean()))
        out[f"rogers_satchell_vol_{n}"] = _sqrt(float(rogers[-n:].mean()))
    ranges = h - lo
    out["range_ratio_20"] = _ratio(float(ranges[-1]), float(ranges[-20:].mean()))
    bodies = np.where(ranges > 0, np.abs(c - o) / np.where(ranges > 0, ranges, 1.0), 0.0)
    out["body_ratio_mean_10"] = float(bodies[-10:].mean())
    out["bullish_share_10"] = float(np.count_nonzero(c[-10:] > o[-10:])) / 10.0
    path = float(np.abs(np.diff(c[-11:])).sum())
    out["efficiency_ratio_10"] = abs(float(c[-1] - c[-11])) / path if path > 0.0 else 0.0
    out["up_close_share_10"] = float(np.count_nonzero(r[-10:] > 0)) / 10.0
    out["return_autocorr_20"] = float(np.corrcoef(r[-20:-1], r[-19:])[0, 1])
    total = float(v[-20:].sum())
    out["volume_ratio_5_20"] = _ratio(float(v[-5:].mean()), total / 20.0)
    signed = float((np.sign(c[-20:] - o[-20:]) * v[-20:]).sum())
    out["signed_volume_ratio_20"] = _ratio(signed, total)
    out["taker_buy_ratio_20"] = _ratio(float(taker[-20:].sum()), total)
    out["dollar_volume_zscore_20"] = _zscore_last(c[-20:] * v[-20:])
    return out


def assert_terms_match_reference(bars: Sequence[BarInput], start: int = 61) -> int:
    """Feed `bars`; from bar `start` on, compare each bar's features with the reference."""
    window = IndicatorWindow(TEST, 1)
    compared = 0
    for index, bar in enumerate(bars):
        previous = window.latest
        update = window.update(bar)
        if index < start or not update.indicators:
            continue
        values = feature_values(window.bars, update.indicators[-1], previous)
        expected = reference(window.bars)
        for name, wanted in expected.items():
            if math.isfinite(wanted):
                assert values[name] == pytest.approx(wanted, rel=1e-9, abs=1e-12), (index, name)
                compared += 1
            else:
                assert name not in values, (index, name)
    return compared


def test_feature_terms_random_walks_equal_window_formulas(make_random_walk: Walk) -> None:
    for seed in (1, 2, 3):
        assert assert_terms_match_reference(make_random_walk(400, seed)) > 300 * 20


def test_feature_terms_binance_klines_with_flats_equal_window_formulas(
    xrpeth_minute_bars: list[BarInput],
) -> None:
    assert any(bar.volume == 0.0 for bar in xrpeth_minute_bars)
    assert assert_terms_match_reference(xrpeth_minute_bars) > 100


def test_feature_terms_talib_reference_series_equal_window_formulas(
    reference_bars: list[BarInput],
) -> None:
    assert assert_terms_match_reference(reference_bars) > 150 * 20


def test_feature_terms_after_revisions_equal_window_formulas(make_random_walk: Walk) -> None:
    bars = make_random_walk(300, 5)
    window = IndicatorWindow(TEST, 1)
    for bar in bars:
        window.update(bar)
    # Revise a bar 30 back, then one 3 back: the terms of the replayed bars are recomputed.
    for back, factor in ((30, 1.02), (3, 0.97)):
        old = bars[-back]
        revised = replace(old, close=old.close * factor, high=max(old.high, old.close * factor))
        revised = replace(revised, low=min(revised.low, revised.close), revision=1)
        previous = window.previous(back)
        update = window.update(revised)
        assert len(update.indicators) == back
        values = feature_values(window.bars, update.indicators[-1], previous)
        for name, wanted in reference(window.bars).items():
            assert values[name] == pytest.approx(wanted, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize(
    "value", [2.5, 1.0, 1e-300, 0.0, -0.0, -1.0, math.inf, -math.inf, math.nan]
)
def test_bar_terms_log_and_divide_follow_numpy(value: float) -> None:
    with np.errstate(all="ignore"):
        expected_log = float(np.log(np.float64(value)))
        assert log(value) == pytest.approx(expected_log, nan_ok=True)
        for numerator in (3.0, -3.0, 0.0, math.nan):
            expected = float(np.float64(numerator) / np.float64(value))
            assert divide(numerator, value) == pytest.approx(expected, nan_ok=True)
