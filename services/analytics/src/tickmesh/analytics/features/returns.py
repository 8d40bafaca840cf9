"""Return features: simple and log returns over several horizons and short-horizon return statistics."""

from __future__ import annotations

import math

import numpy as np

from tickmesh.analytics.bar_terms import ABS_CHANGE, CLOSE, LOG_CLOSE, LOG_RETURN, UP_RETURN, divide
from tickmesh.analytics.features import stats
from tickmesh.analytics.features.context import FeatureContext
from tickmesh.analytics.features.spec import FeatureSpec

GROUP = "returns"
HORIZONS = (1, 3, 5, 10, 20, 60)
# (horizon, return name, log return name): names built once, not per bar.
_HORIZON_NAMES = tuple((h, f"return_{h}", f"log_return_{h}") for h in HORIZONS)

SPECS: tuple[FeatureSpec, ...] = (
    *(
        FeatureSpec(
            f"return_{h}", f"Simple return of the close over {h} bars.", "ratio", GROUP, h + 1
        )
        for h in HORIZONS
    ),
    *(
        FeatureSpec(
            f"log_return_{h}", f"Log return of the close over {h} bars.", "log ratio", GROUP, h + 1
        )
        for h in HORIZONS
    ),
    FeatureSpec("intrabar_return", "Close over open of the bar, minus one.", "ratio", GROUP, 1),
    FeatureSpec("gap_return", "Open over the previous bar's close, minus one.", "ratio", GROUP, 2),
    FeatureSpec(
        "efficiency_ratio_10",
        "Kaufman efficiency: net close move over summed absolute moves, 10 bars (0 if no move).",
        "ratio",
        GROUP,
        11,
    ),
    FeatureSpec(
        "return_autocorr_20",
        "Lag-1 autocorrelation of the last 20 one-bar log returns.",
        "correlation",
        GROUP,
        21,
    ),
    FeatureSpec(
        "return_skew_20", "Skewness of the last 20 one-bar log returns.", "dimensionless", GROUP, 21
    ),
    FeatureSpec(
        "close_zscore_20",
        "Close minus its 20-bar mean over the 20-bar population stdev (0 if flat).",
        "stdev",
        GROUP,
        20,
    ),
    FeatureSpec(
        "drawdown_20", "Close over the highest close of 20 bars, minus one.", "ratio", GROUP, 20
    ),
    FeatureSpec(
        "up_close_share_10",
        "Share of the last 10 one-bar returns that are positive.",
        "fraction",
        GROUP,
        11,
    ),
)


def compute(ctx: FeatureContext, out: dict[str, float]) -> None:
    """Add the return features that have enough history to `out`."""
    closes, bars = ctx.closes, ctx.bars
    last = closes[-1]
    log_close = ctx.terms[:, LOG_CLOSE]
    last_log = float(log_close[-1])
    for h, simple_name, log_name in _HORIZON_NAMES:
        if bars > h:
            out[simple_name] = divide(last, closes[-1 - h]) - 1.0
            out[log_name] = last_log - float(log_close[-1 - h])
    opened = float(ctx.open[-1])
    out["intrabar_return"] = divide(last, opened) - 1.0
    if bars >= 2:
        out["gap_return"] = divide(opened, closes[-2]) - 1.0
    if bars >= 11:
        ten = ctx.sums[10]
        path = ten[ABS_CHANGE]
        out["efficiency_ratio_10"] = abs(last - closes[-11]) / path if path > 0.0 else 0.0
        out["up_close_share_10"] = ten[UP_RETURN] / 10.0
    centred = ctx.returns_20
    if centred is not None:
        recent = ctx.terms[-20:, LOG_RETURN]
        variance = ctx.returns_20_squares / 20.0
        if variance > 0.0:
            # Lag-1 autocorrelation as the Pearson correlation of (r[t-1], r[t]) pairs.
            head, tail = recent[:-1], recent[1:]
            head_c, tail_c = head - stats.mean(head), tail - stats.mean(tail)
            denominator = math.sqrt(float(np.dot(head_c, head_c)) * float(np.dot(tail_c, tail_c)))
            if denominator > 0.0:
                out["return_autocorr_20"] = float(np.dot(head_c, tail_c)) / denominator
            out["return_skew_20"] = float(np.dot(centred * centred, centred)) / 20.0 / variance**1.5
    if bars >= 20:
        out["close_zscore_20"] = ctx.zscores_20[CLOSE]
        out["drawdown_20"] = divide(last, max(closes[-20:])) - 1.0
