"""Candle-shape features: body and wick proportions of the bar and of recent bars."""

from __future__ import annotations

import numpy as np

from tickmesh.analytics.features.context import FeatureContext
from tickmesh.analytics.features.spec import FeatureSpec

GROUP = "candle"

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "body_ratio", "Absolute body over high-low range (0 if flat).", "fraction", GROUP, 1
    ),
    FeatureSpec(
        "upper_wick_ratio",
        "High minus max(open, close) over high-low range (0 if flat).",
        "fraction",
        GROUP,
        1,
    ),
    FeatureSpec(
        "lower_wick_ratio",
        "min(open, close) minus low over high-low range (0 if flat).",
        "fraction",
        GROUP,
        1,
    ),
    FeatureSpec(
        "wick_imbalance",
        "Upper minus lower wick over high-low range (0 if flat).",
        "fraction",
        GROUP,
        1,
    ),
    FeatureSpec(
        "close_location",
        "Close within the bar, 0 at the low, 1 at the high (0.5 if flat).",
        "fraction",
        GROUP,
        1,
    ),
    FeatureSpec(
        "body_direction", "Sign of close minus open: 1 up, -1 down, 0 doji.", "sign", GROUP, 1
    ),
    FeatureSpec(
        "body_ratio_mean_10", "Mean body ratio of the last 10 bars.", "fraction", GROUP, 10
    ),
    FeatureSpec(
        "bullish_share_10",
        "Share of the last 10 bars closing above their open.",
        "fraction",
        GROUP,
        10,
    ),
)


def compute(ctx: FeatureContext, out: dict[str, float]) -> None:
    """Add the candle-shape features that have enough history to `out`."""
    span = min(ctx.bars, 10)
    opens, highs, lows, closes = (
        ctx.open[-span:],
        ctx.high[-span:],
        ctx.low[-span:],
        ctx.close[-span:],
    )
    ranges = highs - lows
    flat = ranges <= 0.0
    # A flat bar has no shape; divide by 1 there and report the documented neutral value.
    safe = np.where(flat, 1.0, ranges)
    bodies = np.where(flat, 0.0, np.abs(closes - opens) / safe)
    top = np.maximum(opens, closes)
    bottom = np.minimum(opens, closes)
    upper = float(highs[-1] - top[-1])
    lower = float(bottom[-1] - lows[-1])
    width = float(safe[-1])
    is_flat = bool(flat[-1])
    out["body_ratio"] = float(bodies[-1])
    out["upper_wick_ratio"] = 0.0 if is_flat else upper / width
    out["lower_wick_ratio"] = 0.0 if is_flat else lower / width
    out["wick_imbalance"] = 0.0 if is_flat else (upper - lower) / width
    out["close_location"] = 0.5 if is_flat else float(closes[-1] - lows[-1]) / width
    out["body_direction"] = float(np.sign(closes[-1] - opens[-1]))
    if ctx.bars >= 10:
        out["body_ratio_mean_10"] = float(bodies.sum()) / 10.0
        out["bullish_share_10"] = float(np.count_nonzero(closes > opens)) / 10.0
