"""FeatureContext: the window tail, its stored per-bar terms and the indicators one bar's features are computed from."""

from __future__ import annotations

from dataclasses import dataclass

from tickmesh.analytics.bars_window import BarWindow, FloatArray
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
        indicators=indicators,
        previous=previous,
    )
