"""Candle-shape features: body and wick proportions of the bar and of recent bars."""

from __future__ import annotations

from tickmesh.analytics.bar_terms import BODY_RATIO, BULLISH, RANGE
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
    last = ctx.last
    width = last[RANGE]
    opened, high, low, close = (
        float(ctx.open[-1]),
        float(ctx.high[-1]),
        float(ctx.low[-1]),
        ctx.closes[-1],
    )
    out["body_ratio"] = last[BODY_RATIO]
    # A flat bar has no shape: the documented neutral values.
    if width <= 0.0:
        out["upper_wick_ratio"] = out["lower_wick_ratio"] = out["wick_imbalance"] = 0.0
        out["close_location"] = 0.5
    else:
        upper = high - max(opened, close)
        lower = min(opened, close) - low
        out["upper_wick_ratio"] = upper / width
        out["lower_wick_ratio"] = lower / width
        out["wick_imbalance"] = (upper - lower) / width
        out["close_location"] = (close - low) / width
    move = close - opened
    out["body_direction"] = 1.0 if move > 0.0 else -1.0 if move < 0.0 else 0.0
    if ctx.bars >= 10:
        ten = ctx.sums[10]
        out["body_ratio_mean_10"] = ten[BODY_RATIO] / 10.0
        out["bullish_share_10"] = ten[BULLISH] / 10.0
