"""Per-bar data-quality checks: names, and the tests that need only the bar (and its neighbours)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.bars_window import FloatArray
from tickmesh.analytics.results import Anomaly

CHECK_STALE = "stale"
CHECK_GAPS = "gaps"
CHECK_DUPLICATES = "duplicates"
CHECK_OUT_OF_ORDER = "out_of_order"
CHECK_SPIKES = "price_spikes"
CHECK_NON_POSITIVE = "non_positive"
CHECK_OHLC = "ohlc_consistency"
CHECK_NON_FINITE = "non_finite"
CHECK_CROSS_TIMEFRAME = "cross_timeframe"

_INF = math.inf
# Scales the median absolute deviation to a normal stdev.
_MAD_TO_SIGMA = 1.4826
# Scales the mean absolute deviation to a normal stdev (sqrt(pi/2)), the fallback when MAD is 0.
_MEAN_AD_TO_SIGMA = 1.2533


def is_clean(bar: BarInput) -> bool:
    """True when no per-bar check can fire: finite positive prices within high/low, volume, no dropped trades.

    Nearly every bar is; the checks below build their findings only for the others.
    """
    low, high = bar.low, bar.high
    # NaN fails every comparison, so it is never clean; high < inf bounds all four prices.
    return (
        0.0 < low <= bar.open <= high < _INF
        and low <= bar.close <= high
        and 0.0 < bar.volume < _INF
        and bar.duplicate_trades == 0
        and bar.out_of_order_trades == 0
    )


def non_finite_anomaly(bar: BarInput) -> Anomaly | None:
    """Return an anomaly when a price or volume is NaN or infinite."""
    fields = {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close}
    fields["volume"] = bar.volume
    bad = [name for name, value in fields.items() if not math.isfinite(value)]
    if not bad:
        return None
    return Anomaly(CHECK_NON_FINITE, bar.open_time_ns, f"non-finite {', '.join(bad)}")


def non_positive_anomaly(bar: BarInput) -> Anomaly | None:
    """Return an anomaly for a zero or negative price, negative volume, or zero volume with trades.

    Zero volume without trades is a flat bar (the exchange repeats the last close) and passes.
    """
    problems = [
        f"{name} {value}"
        for name, value in (
            ("open", bar.open),
            ("high", bar.high),
            ("low", bar.low),
            ("close", bar.close),
        )
        if value <= 0.0
    ]
    if bar.volume < 0.0:
        problems.append(f"volume {bar.volume}")
    elif bar.volume == 0.0 and bar.trade_count > 0:
        problems.append(f"volume 0 with {bar.trade_count} trades")
    if not problems:
        return None
    return Anomaly(CHECK_NON_POSITIVE, bar.open_time_ns, "; ".join(problems))


def ohlc_anomaly(bar: BarInput) -> Anomaly | None:
    """Return an anomaly when high/low do not bound open and close, or high < low."""
    problems = []
    if bar.high < bar.low:
        problems.append(f"high {bar.high} < low {bar.low}")
    if bar.high < max(bar.open, bar.close):
        problems.append(f"high {bar.high} < max(open, close) {max(bar.open, bar.close)}")
    if bar.low > min(bar.open, bar.close):
        problems.append(f"low {bar.low} > min(open, close) {min(bar.open, bar.close)}")
    if not problems:
        return None
    return Anomaly(CHECK_OHLC, bar.open_time_ns, "; ".join(problems))


def gap_anomaly(previous_open_ns: int, open_time_ns: int, duration_ns: int) -> Anomaly | None:
    """Return an anomaly when bars are missing between the previous bar and the one at `open_time_ns`."""
    missing = (open_time_ns - previous_open_ns) // duration_ns - 1
    if missing <= 0:
        return None
    return Anomaly(
        CHECK_GAPS,
        open_time_ns,
        f"{missing} missing bar(s) after {previous_open_ns}",
    )


def trade_order_anomalies(bar: BarInput) -> list[Anomaly]:
    """Return anomalies for the duplicate and out-of-order trades the bar service counted in the bar."""
    found = []
    if bar.duplicate_trades > 0:
        detail = f"{bar.duplicate_trades} duplicate trade(s) received again and dropped"
        found.append(Anomaly(CHECK_DUPLICATES, bar.open_time_ns, detail))
    if bar.out_of_order_trades > 0:
        detail = f"{bar.out_of_order_trades} trade(s) arrived after a later trade"
        found.append(Anomaly(CHECK_OUT_OF_ORDER, bar.open_time_ns, detail))
    return found


def _median(values: FloatArray) -> float:
    """The median of finite values, as np.median computes it, without its per-call overhead."""
    # np.median costs ~10 us in wrappers per call; this runs on every final bar (price spikes).
    count = values.shape[0]
    half = count // 2
    # The method on a copy is np.partition without its Python-level dispatch (~0.7 us a call).
    middle = values.copy()
    if count % 2:
        middle.partition(half)
        return float(middle[half])
    middle.partition((half - 1, half))
    return (float(middle[half - 1]) + float(middle[half])) / 2


def robust_zscore(history: Sequence[float] | FloatArray, value: float) -> float | None:
    """Return |value - median| over the MAD-based sigma of `history`; None if it has no spread."""
    values = (
        history
        if isinstance(history, np.ndarray)
        else np.fromiter(history, dtype=np.float64, count=len(history))
    )
    median = _median(values)
    deviations = np.abs(values - median)
    sigma = _MAD_TO_SIGMA * _median(deviations)
    if sigma == 0.0:
        # Mostly-flat series (many zero returns) have MAD 0; the mean deviation still has scale.
        sigma = _MEAN_AD_TO_SIGMA * float(deviations.mean())
    if sigma == 0.0:
        return None
    return abs(value - median) / sigma
