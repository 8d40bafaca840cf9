"""Indicator-derived features: distances to moving averages, Bollinger, RSI/MACD/Stochastic/ADX states, ATR moves."""

from __future__ import annotations

from tickmesh.analytics.bar_terms import RANGE
from tickmesh.analytics.features.context import FeatureContext
from tickmesh.analytics.features.spec import FeatureSpec

GROUP_TREND = "trend"
GROUP_OSCILLATOR = "oscillator"
GROUP_ATR = "atr"
_MOVING_AVERAGES = (
    ("sma_20", 20),
    ("sma_50", 50),
    ("sma_100", 100),
    ("sma_200", 200),
    ("ema_12", 12),
    ("ema_26", 26),
    ("ema_50", 50),
)
_SPREADS = (("sma_20", "sma_50", 50), ("sma_50", "sma_200", 200), ("ema_12", "ema_26", 26))
_MACD_BARS = 34
# Feature names built once rather than per bar.
_DISTANCE_NAMES = tuple((name, f"{name}_distance") for name, _ in _MOVING_AVERAGES)
_SPREAD_NAMES = tuple(
    (fast, slow, f"{fast}_{slow.split('_')[1]}_spread") for fast, slow, _ in _SPREADS
)

SPECS: tuple[FeatureSpec, ...] = (
    *(
        FeatureSpec(
            f"{name}_distance",
            f"Close over the {name.upper().replace('_', ' ')} of the close, minus one.",
            "ratio",
            GROUP_TREND,
            bars,
        )
        for name, bars in _MOVING_AVERAGES
    ),
    *(
        FeatureSpec(
            f"{fast}_{slow.split('_')[1]}_spread",
            f"{fast.upper().replace('_', ' ')} over {slow.upper().replace('_', ' ')}, minus one.",
            "ratio",
            GROUP_TREND,
            bars,
        )
        for fast, slow, bars in _SPREADS
    ),
    FeatureSpec(
        "sma_20_slope_5",
        "SMA 20 now over SMA 20 five bars ago, minus one.",
        "ratio",
        GROUP_TREND,
        25,
    ),
    FeatureSpec("adx_14_scaled", "ADX(14) divided by 100.", "fraction", GROUP_TREND, 28),
    FeatureSpec(
        "rsi_14_centered", "RSI(14) minus 50, divided by 50.", "fraction", GROUP_OSCILLATOR, 15
    ),
    FeatureSpec(
        "rsi_14_overbought", "1 if RSI(14) is at least 70, else 0.", "flag", GROUP_OSCILLATOR, 15
    ),
    FeatureSpec(
        "rsi_14_oversold", "1 if RSI(14) is at most 30, else 0.", "flag", GROUP_OSCILLATOR, 15
    ),
    FeatureSpec(
        "macd_line_pct", "MACD(12,26,9) line over the close.", "ratio", GROUP_OSCILLATOR, _MACD_BARS
    ),
    FeatureSpec(
        "macd_histogram_pct",
        "MACD histogram over the close.",
        "ratio",
        GROUP_OSCILLATOR,
        _MACD_BARS,
    ),
    FeatureSpec(
        "macd_above_signal",
        "1 if the MACD line is above its signal, else 0.",
        "flag",
        GROUP_OSCILLATOR,
        _MACD_BARS,
    ),
    FeatureSpec(
        "macd_cross",
        "1 if MACD crossed above its signal on this bar, -1 if below, else 0.",
        "sign",
        GROUP_OSCILLATOR,
        _MACD_BARS + 1,
    ),
    FeatureSpec(
        "stoch_k_scaled",
        "Stochastic(14,3,3) slow %K divided by 100.",
        "fraction",
        GROUP_OSCILLATOR,
        18,
    ),
    FeatureSpec(
        "stoch_k_minus_d",
        "Stochastic slow %K minus slow %D, divided by 100.",
        "fraction",
        GROUP_OSCILLATOR,
        18,
    ),
    FeatureSpec(
        "bb_percent_b",
        "Bollinger %B: close minus lower band over band width (20, 2).",
        "fraction",
        GROUP_OSCILLATOR,
        20,
    ),
    FeatureSpec(
        "bb_width",
        "Bollinger band width (upper minus lower) over the middle band.",
        "ratio",
        GROUP_OSCILLATOR,
        20,
    ),
    FeatureSpec("atr_pct", "ATR(14) over the close.", "ratio", GROUP_ATR, 15),
    FeatureSpec("move_atr_1", "One-bar close change in ATR(14) units.", "atr", GROUP_ATR, 15),
    FeatureSpec("move_atr_5", "Five-bar close change in ATR(14) units.", "atr", GROUP_ATR, 15),
    FeatureSpec("range_atr", "High minus low in ATR(14) units.", "atr", GROUP_ATR, 15),
)


def compute(ctx: FeatureContext, out: dict[str, float]) -> None:
    """Add the indicator-derived features whose indicators have values to `out`."""
    indicators = ctx.indicators
    close = ctx.closes[-1]
    averages = {name: getattr(indicators, name) for name, _ in _MOVING_AVERAGES}
    for name, feature in _DISTANCE_NAMES:
        value = averages[name]
        if value is not None and value != 0.0:
            out[feature] = close / value - 1.0
    for fast, slow, feature in _SPREAD_NAMES:
        fast_value, slow_value = averages[fast], averages[slow]
        if fast_value is not None and slow_value is not None and slow_value != 0.0:
            out[feature] = fast_value / slow_value - 1.0
    if ctx.bars >= 25:
        earlier = float(ctx.close[-25:-5].sum()) / 20.0
        if earlier != 0.0:
            out["sma_20_slope_5"] = float(ctx.close[-20:].sum()) / 20.0 / earlier - 1.0
    if indicators.adx is not None:
        out["adx_14_scaled"] = indicators.adx / 100.0
    _oscillators(ctx, close, out)
    _atr_moves(ctx, close, out)


def _oscillators(ctx: FeatureContext, close: float, out: dict[str, float]) -> None:
    indicators = ctx.indicators
    if indicators.rsi is not None:
        out["rsi_14_centered"] = (indicators.rsi - 50.0) / 50.0
        out["rsi_14_overbought"] = 1.0 if indicators.rsi >= 70.0 else 0.0
        out["rsi_14_oversold"] = 1.0 if indicators.rsi <= 30.0 else 0.0
    histogram = indicators.macd_histogram
    if indicators.macd is not None and histogram is not None and close != 0.0:
        out["macd_line_pct"] = indicators.macd / close
        out["macd_histogram_pct"] = histogram / close
        out["macd_above_signal"] = 1.0 if histogram > 0.0 else 0.0
        previous = ctx.previous.macd_histogram if ctx.previous is not None else None
        if previous is not None:
            crossed_up = previous <= 0.0 < histogram
            crossed_down = histogram <= 0.0 < previous
            out["macd_cross"] = 1.0 if crossed_up else -1.0 if crossed_down else 0.0
    if indicators.stoch_k is not None and indicators.stoch_d is not None:
        out["stoch_k_scaled"] = indicators.stoch_k / 100.0
        out["stoch_k_minus_d"] = (indicators.stoch_k - indicators.stoch_d) / 100.0
    upper, middle, lower = indicators.bb_upper, indicators.bb_middle, indicators.bb_lower
    if upper is not None and middle is not None and lower is not None:
        if upper > lower:
            out["bb_percent_b"] = (close - lower) / (upper - lower)
        if middle != 0.0:
            out["bb_width"] = (upper - lower) / middle


def _atr_moves(ctx: FeatureContext, close: float, out: dict[str, float]) -> None:
    atr = ctx.indicators.atr
    if atr is None or atr <= 0.0:
        return
    if close != 0.0:
        out["atr_pct"] = atr / close
    out["move_atr_1"] = (close - ctx.closes[-2]) / atr
    out["range_atr"] = ctx.last[RANGE] / atr
    if ctx.bars >= 6:
        out["move_atr_5"] = (close - ctx.closes[-6]) / atr
