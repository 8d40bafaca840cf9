"""FeatureContext: the window tail and indicators one bar's features are computed from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tickmesh.analytics.bars_window import BarWindow, FloatArray
from tickmesh.analytics.results import Indicators

# The longest bar lookback of any feature (return_60 needs 61 closes).
TAIL_BARS = 61


@dataclass(frozen=True, slots=True)
class FeatureContext:
    """Bars up to and including bar t (never later), as numpy tails, plus the indicators at t and t-1."""

    open_time_ns: int
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    taker_buy_volume: FloatArray
    log_close: FloatArray
    log_returns: FloatArray
    indicators: Indicators
    previous: Indicators | None

    @property
    def bars(self) -> int:
        """Return how many bars the tail holds (the available history, capped at TAIL_BARS)."""
        return int(self.close.shape[0])


def build_context(
    window: BarWindow, indicators: Indicators, previous: Indicators | None
) -> FeatureContext:
    """Return the context of the newest bar in `window`; invalid logs become NaN and drop later."""
    close = window.close[-TAIL_BARS:]
    with np.errstate(all="ignore"):
        log_close = np.log(close)
    return FeatureContext(
        open_time_ns=int(window.open_time[-1]),
        open=window.open[-TAIL_BARS:],
        high=window.high[-TAIL_BARS:],
        low=window.low[-TAIL_BARS:],
        close=close,
        volume=window.volume[-TAIL_BARS:],
        taker_buy_volume=window.taker_buy_volume[-TAIL_BARS:],
        log_close=log_close,
        log_returns=np.diff(log_close),
        indicators=indicators,
        previous=previous,
    )
