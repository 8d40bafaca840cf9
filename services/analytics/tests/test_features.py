"""ML features: catalog completeness, history requirements and the no-look-ahead (truncation) proof."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pytest

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.feature_catalog import FEATURE_VERSION, feature_catalog
from tickmesh.analytics.features import compute_features, feature_values
from tickmesh.analytics.indicators import IndicatorWindow
from tickmesh.v2 import market_pb2

from .domain_helpers import ETHUSDT_USDM, TEST

Walk = Callable[[int, int], list[BarInput]]
GROUPS_REQUIRED = {
    "returns",
    "volatility",
    "range",
    "candle",
    "volume",
    "vwap",
    "trend",
    "oscillator",
    "atr",
    "calendar",
}


def stream_features(bars: Sequence[BarInput]) -> list[dict[str, float]]:
    """Feed bars one at a time; return each bar's feature values."""
    window = IndicatorWindow(TEST, 1)
    out: list[dict[str, float]] = []
    for bar in bars:
        previous = window.latest
        indicators = window.update(bar).indicators[0]
        out.append(feature_values(window.bars, indicators, previous))
    return out


def test_feature_catalog_has_at_least_60_documented_unique_features() -> None:
    catalog = feature_catalog()
    names = [spec.name for spec in catalog]
    assert len(names) >= 60
    assert len(set(names)) == len(names)
    for spec in catalog:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", spec.name), spec.name
        assert spec.description.endswith(".")
        assert "\n" not in spec.description
        assert spec.unit
        assert spec.version == FEATURE_VERSION
        assert spec.min_bars >= 1
    assert {spec.group for spec in catalog} == GROUPS_REQUIRED


def test_feature_values_each_feature_first_appears_at_its_min_bars(make_random_walk: Walk) -> None:
    history = stream_features(make_random_walk(260, 21))
    first_seen: dict[str, int] = {}
    for index, values in enumerate(history):
        for name in values:
            first_seen.setdefault(name, index + 1)
    catalog = feature_catalog()
    assert {spec.name: spec.min_bars for spec in catalog} == first_seen
    assert set(history[-1]) == {spec.name for spec in catalog}


def test_features_truncated_history_equal_full_history_at_t_for_every_feature(
    make_random_walk: Walk,
) -> None:
    bars = make_random_walk(330, 31)
    full = stream_features(bars)
    checked: set[str] = set()
    for t in [*range(0, 40), *range(40, 330, 9), 329]:
        truncated = stream_features(bars[: t + 1])[-1]
        assert truncated == full[t], t
        checked.update(truncated)
    assert checked == {spec.name for spec in feature_catalog()}


def test_features_changed_future_bars_leave_past_features_unchanged(make_random_walk: Walk) -> None:
    bars = make_random_walk(300, 41)
    other_future = make_random_walk(300, 42)
    cut = 240
    altered = bars[: cut + 1] + [
        replace(bar, open_time_ns=bars[index].open_time_ns)
        for index, bar in enumerate(other_future)
        if index > cut
    ]
    original, changed = stream_features(bars), stream_features(altered)
    assert original[: cut + 1] == changed[: cut + 1]
    assert original[cut + 1] != changed[cut + 1]


def test_feature_values_zero_price_drops_undefined_features_not_nan(make_random_walk: Walk) -> None:
    bars = make_random_walk(80, 51)
    bars[-1] = replace(bars[-1], open=0.0, low=0.0, close=0.0)
    values = stream_features(bars)[-1]
    assert all(math.isfinite(value) for value in values.values())
    assert "log_return_1" not in values
    assert "time_of_day_sin" in values


def test_feature_values_known_bar_gives_expected_values() -> None:
    hour = 3_600_000_000_000
    # 1970-01-05 06:00 UTC, a Monday.
    start = 4 * 24 * hour + 6 * hour
    bars = [
        BarInput(start, 100.0, 100.0, 100.0, 100.0, 10.0),
        BarInput(start + 60_000_000_000, 100.0, 112.0, 96.0, 110.0, 30.0),
    ]
    values = stream_features(bars)[-1]
    assert values["return_1"] == pytest.approx(0.10)
    assert values["log_return_1"] == pytest.approx(math.log(1.1))
    assert values["range_pct"] == pytest.approx(16.0 / 110.0)
    assert values["body_ratio"] == pytest.approx(10.0 / 16.0)
    assert values["upper_wick_ratio"] == pytest.approx(2.0 / 16.0)
    assert values["lower_wick_ratio"] == pytest.approx(4.0 / 16.0)
    assert values["body_direction"] == 1.0
    assert values["time_of_day_sin"] == pytest.approx(
        math.sin(2 * math.pi * (6 * 3600 + 60) / 86400)
    )
    assert values["day_of_week_sin"] == pytest.approx(0.0)
    assert values["day_of_week_cos"] == pytest.approx(1.0)
    assert "return_3" not in values
    # Bars without taker-buy volume (source bars, rows stored before v2) have no taker features.
    assert "taker_buy_ratio" not in values


def test_feature_values_taker_buy_ratios_from_taker_buy_volume(make_random_walk: Walk) -> None:
    bars = make_random_walk(30, 81)
    values = stream_features(bars)[-1]
    assert values["taker_buy_ratio"] == bars[-1].taker_buy_volume / bars[-1].volume
    taker = math.fsum(bar.taker_buy_volume for bar in bars[-20:])
    total = math.fsum(bar.volume for bar in bars[-20:])
    assert values["taker_buy_ratio_20"] == pytest.approx(taker / total, rel=1e-12)
    assert 0.0 <= values["taker_buy_ratio_20"] <= 1.0
    # One bar of unknown taker-buy volume in the 20: the 20-bar ratio is absent, not wrong.
    bars[-5] = replace(bars[-5], taker_buy_volume=math.nan)
    unknown = stream_features(bars)[-1]
    assert "taker_buy_ratio_20" not in unknown
    assert unknown["taker_buy_ratio"] == values["taker_buy_ratio"]
    # A flat bar (no trades) has no taker-buy ratio.
    bars[-1] = replace(bars[-1], volume=0.0, taker_buy_volume=0.0)
    assert "taker_buy_ratio" not in stream_features(bars)[-1]


def test_feature_values_volatility_matches_direct_formulas(make_random_walk: Walk) -> None:
    bars = make_random_walk(80, 61)
    values = stream_features(bars)[-1]
    close = np.array([bar.close for bar in bars])
    high = np.array([bar.high for bar in bars[-20:]])
    low = np.array([bar.low for bar in bars[-20:]])
    returns = np.diff(np.log(close))[-20:]
    assert values["realized_vol_20"] == pytest.approx(float(np.std(returns, ddof=1)))
    parkinson = math.sqrt(float(np.mean(np.log(high / low) ** 2)) / (4 * math.log(2)))
    assert values["parkinson_vol_20"] == pytest.approx(parkinson)


def test_compute_features_to_proto_carries_version_and_values(make_random_walk: Walk) -> None:
    window = IndicatorWindow(ETHUSDT_USDM, 1)
    for bar in make_random_walk(30, 71):
        indicators = window.update(bar).indicators[0]
    features = compute_features(window.bars, indicators, window.previous())
    message = features.to_proto()
    assert message.feature_version == FEATURE_VERSION
    assert (message.exchange, message.symbol) == (market_pb2.EXCHANGE_BINANCE_USDM, "ETHUSDT")
    assert dict(message.values) == pytest.approx(dict(features.values))
    assert "return_20" in message.values
