"""FeatureContext: the window tail, its stored per-bar terms and the indicators one bar's features are computed from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tickmesh.analytics.bar_terms import CLOSE, DOLLAR_VOLUME, LOG_RETURN, VOLUME
from tickmesh.analytics.bars_window import BarWindow, FloatArray
from tickmesh.analytics.features import stats
from tickmesh.analytics.results import Indicators

# The longest bar lookback of any feature (return_60 needs 61 closes).
TAIL_BARS = 61
# The windows whose per-term sums (rows of bar_terms summed) features read.
SUM_WINDOWS = (5, 10, 20)
# The terms whose last value features take as a z-score against the last 20 bars.
ZSCORE_TERMS = (CLOSE, VOLUME, DOLLAR_VOLUME)


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and one is made per bar.
@dataclass(slots=True)
class FeatureContext:
    """Bars up to and including bar t (never later) as numpy tails and Python lists, plus the indicators at t and t-1.

    `terms` holds each tail bar's bar_terms row; `sums[n]` the per-term sums over the last n
    bars (present once there are n bars): one numpy call per window instead of one per term.
    `returns_20` are the last 20 one-bar log returns minus their mean and `returns_20_squares`
    their sum of squares (once there are 21 bars), shared by the return and volatility features.
    `zscores_20[term]` is the newest value's z-score against the last 20 bars (population
    stdev, 0 if constant) for the ZSCORE_TERMS: one 20 x 3 block instead of three windows.
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
    zscores_20: dict[int, float]
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
    zscores: dict[int, float] = {}
    if count >= 20:
        block = terms[-20:, ZSCORE_TERMS]
        means = block.sum(axis=0) / 20.0
        centred = block - means
        spreads = np.sqrt((centred * centred).sum(axis=0) / 20.0).tolist()
        for term, last, spread in zip(ZSCORE_TERMS, centred[-1].tolist(), spreads, strict=True):
            zscores[term] = last / spread if spread > 0.0 else 0.0
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
        zscores_20=zscores,
        indicators=indicators,
        previous=previous,
    )
