"""FeatureContext: the window tail, its stored per-bar terms and the indicators one bar's features are computed from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tickmesh.analytics.bar_terms import LOG_RETURN
from tickmesh.analytics.bars_window import BarWindow, FloatArray
from tickmesh.analytics.features import stats
from tickmesh.analytics.results import Indicators

# The longest bar lookback of any feature (return_60 needs 61 closes).
TAIL_BARS = 61
# The windows whose per-term sums (rows of bar_terms summed) features read.
SUM_WINDOWS = (5, 10, 20)


@dataclass(frozen=True, slots=True)
class FeatureContext:
    """Bars up to and including bar t (never later) as numpy tails and Python lists, plus the indicators at t and t-1.

    `terms` holds each tail bar's bar_terms row; `sums[n]` the per-term sums over the last n
    bars (present once there are n bars): one numpy call per window instead of one per term.
    `returns_20` are the last 20 one-bar log returns minus their mean and `returns_20_squares`
    their sum of squares (once there are 21 bars), shared by the return and volatility features.
    """

    open_time_ns: int
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    terms: FloatArray
    closes: list[float]
    last: list[float]
    sums: dict[int, list[float]]
    returns_20: FloatArray | None
    returns_20_squares: float
    indicators: Indicators
    previous: Indicators | None

    @property
    def bars(self) -> int:
        """Return how many bars the tail holds (the available history, capped at TAIL_BARS)."""
        return len(self.closes)


def build_context(
    window: BarWindow, indicators: Indicators, previous: Indicators | None
) -> FeatureContext:
    """Return the context of the newest bar in `window`."""
    close = window.close[-TAIL_BARS:]
    terms = window.terms[-TAIL_BARS:]
    count = close.shape[0]
    sums = {n: terms[-n:].sum(axis=0).tolist() for n in SUM_WINDOWS if count >= n}
    returns_20 = None
    squares = 0.0
    if count >= 21:
        recent = terms[-20:, LOG_RETURN]
        returns_20 = recent - stats.mean(recent)
        squares = float(np.dot(returns_20, returns_20))
    return FeatureContext(
        open_time_ns=int(window.open_time[-1]),
        open=window.open[-TAIL_BARS:],
        high=window.high[-TAIL_BARS:],
        low=window.low[-TAIL_BARS:],
        close=close,
        volume=window.volume[-TAIL_BARS:],
        terms=terms,
        closes=close.tolist(),
        last=terms[-1].tolist(),
        sums=sums,
        returns_20=returns_20,
        returns_20_squares=squares,
        indicators=indicators,
        previous=previous,
    )
