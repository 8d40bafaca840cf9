"""Per-bar terms of the ML features, computed once when a bar enters the window.

A feature over n bars used to recompute each bar's logs, ratios and candle shape from the
OHLCV tail at every new bar (about 80 small numpy calls a bar, ~1 us each). Each term here
depends only on its bar and the bar before, so it is computed once, stored beside the bar
(rewinds and revisions drop and recompute it with the bar) and the windowed features become
a few sums over stored rows. The arithmetic follows numpy's: a zero or negative price gives
inf or NaN (the feature is then dropped), never an exception.
"""

from __future__ import annotations

import math

# Column of each term in a row (see bar_terms).
LOG_CLOSE = 0
LOG_RETURN = 1
PARKINSON = 2
GARMAN_KLASS = 3
ROGERS_SATCHELL = 4
RANGE = 5
BODY_RATIO = 6
BULLISH = 7
SIGNED_VOLUME = 8
DOLLAR_VOLUME = 9
ABS_CHANGE = 10
UP_RETURN = 11
VOLUME = 12
TAKER_BUY_VOLUME = 13
CLOSE = 14
TERMS = 15

_GARMAN_KLASS = 2.0 * math.log(2.0) - 1.0
_NAN = math.nan
_INF = math.inf


def log(value: float) -> float:
    """Natural log as numpy computes it: -inf at zero, NaN below."""
    if value > 0.0:
        return math.log(value)
    return -_INF if value == 0.0 else _NAN


def divide(numerator: float, denominator: float) -> float:
    """numerator / denominator as numpy divides: +-inf or NaN by zero, no exception."""
    if denominator != 0.0:
        return numerator / denominator
    if numerator == 0.0 or math.isnan(numerator):
        return _NAN
    return math.copysign(_INF, numerator) * math.copysign(1.0, denominator)


def _sign(value: float) -> float:
    return 1.0 if value > 0.0 else -1.0 if value < 0.0 else value


def bar_terms(
    open_: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    taker_buy_volume: float,
    previous_close: float | None,
) -> tuple[float, ...]:
    """Return the TERMS values of one bar, given the close of the bar before (None for the first)."""
    log_close = log(close)
    if previous_close is None:
        log_return = abs_change = _NAN
    else:
        log_return = log_close - log(previous_close)
        abs_change = abs(close - previous_close)
    log_hl = log(divide(high, low))
    log_co = log(divide(close, open_))
    parkinson = log_hl * log_hl
    garman_klass = 0.5 * parkinson - _GARMAN_KLASS * log_co * log_co
    rogers_satchell = log(divide(high, close)) * log(divide(high, open_)) + log(
        divide(low, close)
    ) * log(divide(low, open_))
    bar_range = high - low
    # A flat bar (no range) has no shape: body ratio 0, as documented.
    body = 0.0 if bar_range <= 0.0 else abs(close - open_) / bar_range
    return (
        log_close,
        log_return,
        parkinson,
        garman_klass,
        rogers_satchell,
        bar_range,
        body,
        1.0 if close > open_ else 0.0,
        _sign(close - open_) * volume,
        close * volume,
        abs_change,
        1.0 if log_return > 0.0 else 0.0,
        volume,
        taker_buy_volume,
        close,
    )
