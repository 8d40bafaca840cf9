"""Volume features: z-scores, ratios, signed-volume and taker-buy imbalance, distance to the session VWAP."""

from __future__ import annotations

import math

from tickmesh.analytics.bar_terms import (
    DOLLAR_VOLUME,
    SIGNED_VOLUME,
    TAKER_BUY_VOLUME,
    VOLUME,
)
from tickmesh.analytics.features import stats
from tickmesh.analytics.features.context import FeatureContext
from tickmesh.analytics.features.spec import FeatureSpec

GROUP_VOLUME = "volume"
GROUP_VWAP = "vwap"
ZSCORE_WINDOWS = (20, 50)

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "log_volume", "Natural log of one plus the bar volume.", "log volume", GROUP_VOLUME, 1
    ),
    *(
        FeatureSpec(
            f"volume_zscore_{n}",
            f"Volume minus its {n}-bar mean over the {n}-bar population stdev (0 if constant).",
            "stdev",
            GROUP_VOLUME,
            n,
        )
        for n in ZSCORE_WINDOWS
    ),
    FeatureSpec(
        "volume_ratio_sma_20",
        "Volume over the 20-bar volume SMA indicator.",
        "ratio",
        GROUP_VOLUME,
        20,
    ),
    FeatureSpec(
        "volume_ratio_5_20",
        "Mean volume of 5 bars over that of 20 bars.",
        "ratio",
        GROUP_VOLUME,
        20,
    ),
    FeatureSpec(
        "signed_volume_ratio_20",
        "Sum of volume signed by bar direction over total volume, 20 bars.",
        "fraction",
        GROUP_VOLUME,
        20,
    ),
    FeatureSpec(
        "taker_buy_ratio",
        "Taker-buy volume over the bar volume (absent when unknown or the bar is flat).",
        "fraction",
        GROUP_VOLUME,
        1,
    ),
    FeatureSpec(
        "taker_buy_ratio_20",
        "Taker-buy volume over total volume, 20 bars (absent when any is unknown).",
        "fraction",
        GROUP_VOLUME,
        20,
    ),
    FeatureSpec(
        "dollar_volume_zscore_20",
        "Close times volume as a z-score against its 20-bar mean and stdev (0 if constant).",
        "stdev",
        GROUP_VOLUME,
        20,
    ),
    FeatureSpec(
        "volume_change_1",
        "Change of log(1 + volume) from the previous bar.",
        "log ratio",
        GROUP_VOLUME,
        2,
    ),
    FeatureSpec(
        "vwap_distance",
        "Close over the session (UTC day) VWAP, minus one.",
        "ratio",
        GROUP_VWAP,
        1,
    ),
    FeatureSpec(
        "vwap_distance_atr",
        "Close minus the session VWAP, in ATR(14) units.",
        "atr",
        GROUP_VWAP,
        15,
    ),
)


def compute(ctx: FeatureContext, out: dict[str, float]) -> None:
    """Add the volume and VWAP features that have enough history to `out`."""
    bars, volume, last_terms = ctx.bars, ctx.volume, ctx.last
    last = last_terms[VOLUME]
    # NaN (unknown taker-buy volume) or 0/0 (a flat bar) is dropped with the other undefined values.
    if last > 0.0:
        out["taker_buy_ratio"] = last_terms[TAKER_BUY_VOLUME] / last
    log_volume = math.log1p(last)
    out["log_volume"] = log_volume
    if bars >= 2:
        out["volume_change_1"] = log_volume - math.log1p(float(volume[-2]))
    if bars >= 20:
        out["volume_zscore_20"] = ctx.zscores_20[VOLUME]
    if bars >= 50:
        out["volume_zscore_50"] = stats.zscore_last(volume[-50:])
    if bars >= 20:
        twenty = ctx.sums[20]
        total = twenty[VOLUME]
        if total > 0.0:
            out["volume_ratio_5_20"] = (ctx.sums[5][VOLUME] / 5.0) / (total / 20.0)
            out["signed_volume_ratio_20"] = twenty[SIGNED_VOLUME] / total
            out["taker_buy_ratio_20"] = twenty[TAKER_BUY_VOLUME] / total
        out["dollar_volume_zscore_20"] = ctx.zscores_20[DOLLAR_VOLUME]
    indicators = ctx.indicators
    if indicators.volume_sma is not None and indicators.volume_sma > 0.0:
        out["volume_ratio_sma_20"] = last / indicators.volume_sma
    close = ctx.closes[-1]
    if indicators.vwap is not None and indicators.vwap != 0.0:
        out["vwap_distance"] = close / indicators.vwap - 1.0
        if indicators.atr is not None and indicators.atr > 0.0:
            out["vwap_distance_atr"] = (close - indicators.vwap) / indicators.atr
