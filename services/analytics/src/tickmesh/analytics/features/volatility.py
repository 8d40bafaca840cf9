"""Volatility and range features: realised, Parkinson, Garman-Klass, Rogers-Satchell, bar ranges."""

from __future__ import annotations

import math

from tickmesh.analytics.bar_terms import (
    GARMAN_KLASS,
    LOG_RETURN,
    PARKINSON,
    RANGE,
    ROGERS_SATCHELL,
    divide,
)
from tickmesh.analytics.features import stats
from tickmesh.analytics.features.context import FeatureContext
from tickmesh.analytics.features.spec import FeatureSpec

GROUP_VOLATILITY = "volatility"
GROUP_RANGE = "range"
REALIZED_WINDOWS = (10, 20, 60)
RANGE_WINDOWS = (10, 20)
# Feature names by window, built once rather than per bar.
_REALIZED_NAMES = {n: f"realized_vol_{n}" for n in REALIZED_WINDOWS}
_RANGE_NAMES = {
    n: (f"parkinson_vol_{n}", f"garman_klass_vol_{n}", f"rogers_satchell_vol_{n}")
    for n in RANGE_WINDOWS
}
_DISTANCE_NAMES = {n: (f"high_distance_{n}", f"low_distance_{n}") for n in (20, 50)}
_PARKINSON = 1.0 / (4.0 * math.log(2.0))

SPECS: tuple[FeatureSpec, ...] = (
    *(
        FeatureSpec(
            f"realized_vol_{n}",
            f"Sample stdev of the last {n} one-bar log returns (per bar, not annualised).",
            "log ratio",
            GROUP_VOLATILITY,
            n + 1,
        )
        for n in REALIZED_WINDOWS
    ),
    *(
        FeatureSpec(
            f"parkinson_vol_{n}",
            f"Parkinson high-low volatility over {n} bars (per bar).",
            "log ratio",
            GROUP_VOLATILITY,
            n,
        )
        for n in RANGE_WINDOWS
    ),
    *(
        FeatureSpec(
            f"garman_klass_vol_{n}",
            f"Garman-Klass OHLC volatility over {n} bars (per bar).",
            "log ratio",
            GROUP_VOLATILITY,
            n,
        )
        for n in RANGE_WINDOWS
    ),
    *(
        FeatureSpec(
            f"rogers_satchell_vol_{n}",
            f"Rogers-Satchell drift-independent volatility over {n} bars (per bar).",
            "log ratio",
            GROUP_VOLATILITY,
            n,
        )
        for n in RANGE_WINDOWS
    ),
    FeatureSpec(
        "vol_ratio_10_60",
        "Realised volatility over 10 bars divided by that over 60 bars.",
        "ratio",
        GROUP_VOLATILITY,
        61,
    ),
    FeatureSpec("range_pct", "High minus low over the close.", "ratio", GROUP_RANGE, 1),
    FeatureSpec(
        "true_range_pct",
        "True range (with the previous close) over the close.",
        "ratio",
        GROUP_RANGE,
        2,
    ),
    FeatureSpec(
        "range_ratio_20",
        "High minus low over its 20-bar mean.",
        "ratio",
        GROUP_RANGE,
        20,
    ),
    FeatureSpec(
        "close_location_20",
        "Close within the 20-bar low..high channel, 0 at the low, 1 at the high (0.5 if flat).",
        "fraction",
        GROUP_RANGE,
        20,
    ),
    FeatureSpec(
        "high_distance_20",
        "Close over the 20-bar highest high, minus one.",
        "ratio",
        GROUP_RANGE,
        20,
    ),
    FeatureSpec(
        "low_distance_20", "Close over the 20-bar lowest low, minus one.", "ratio", GROUP_RANGE, 20
    ),
    FeatureSpec(
        "high_distance_50",
        "Close over the 50-bar highest high, minus one.",
        "ratio",
        GROUP_RANGE,
        50,
    ),
    FeatureSpec(
        "low_distance_50", "Close over the 50-bar lowest low, minus one.", "ratio", GROUP_RANGE, 50
    ),
)


def compute(ctx: FeatureContext, out: dict[str, float]) -> None:
    """Add the volatility and range features that have enough history to `out`."""
    bars = ctx.bars
    log_returns = ctx.terms[:, LOG_RETURN]
    realized: dict[int, float] = {}
    for n in REALIZED_WINDOWS:
        if n == 20 and bars > n:
            realized[n] = math.sqrt(ctx.returns_20_squares / 19.0)
        elif bars > n:
            realized[n] = stats.std(log_returns[-n:], ddof=1)
        if n in realized:
            out[_REALIZED_NAMES[n]] = realized[n]
    if 10 in realized and 60 in realized and realized[60] > 0.0:
        out["vol_ratio_10_60"] = realized[10] / realized[60]
    for n in RANGE_WINDOWS:
        if bars >= n:
            sums = ctx.sums[n]
            parkinson, garman_klass, rogers_satchell = _RANGE_NAMES[n]
            out[parkinson] = _sqrt(_PARKINSON * (sums[PARKINSON] / n))
            out[garman_klass] = _sqrt(sums[GARMAN_KLASS] / n)
            out[rogers_satchell] = _sqrt(sums[ROGERS_SATCHELL] / n)
    _ranges(ctx, out)


def _sqrt(value: float) -> float:
    # Inconsistent OHLC can push an estimator below zero; NaN makes the feature absent.
    return math.sqrt(value) if value >= 0.0 else math.nan


def _ranges(ctx: FeatureContext, out: dict[str, float]) -> None:
    # divide() as numpy would: a zero price yields inf/NaN (dropped later), not ZeroDivisionError.
    bars, close, high, low = ctx.bars, ctx.closes[-1], ctx.high, ctx.low
    bar_range = ctx.last[RANGE]
    out["range_pct"] = divide(bar_range, close)
    if bars >= 2:
        previous = ctx.closes[-2]
        last_high, last_low = float(high[-1]), float(low[-1])
        true_range = max(bar_range, abs(last_high - previous), abs(last_low - previous))
        out["true_range_pct"] = divide(true_range, close)
    for n in (20, 50):
        if bars >= n:
            highest = float(high[-n:].max())
            lowest = float(low[-n:].min())
            high_name, low_name = _DISTANCE_NAMES[n]
            out[high_name] = divide(close, highest) - 1.0
            out[low_name] = divide(close, lowest) - 1.0
            if n == 20:
                channel = highest - lowest
                out["close_location_20"] = (close - lowest) / channel if channel > 0.0 else 0.5
                mean_range = ctx.sums[20][RANGE] / 20.0
                if mean_range > 0.0:
                    out["range_ratio_20"] = bar_range / mean_range
