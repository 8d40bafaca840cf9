"""The indicator columns, in the order of the `indicators` table and the Indicators message."""

from __future__ import annotations

INDICATOR_NAMES: tuple[str, ...] = (
    "rsi",
    "macd",
    "macd_signal",
    "macd_histogram",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "sma_20",
    "sma_50",
    "sma_100",
    "sma_200",
    "ema_12",
    "ema_26",
    "ema_50",
    "vwap",
    "stoch_k",
    "stoch_d",
    "atr",
    "adx",
    "volume_sma",
)
