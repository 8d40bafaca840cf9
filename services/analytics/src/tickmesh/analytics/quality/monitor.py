"""QualityMonitor: per symbol and timeframe data-quality state, observed per bar and assessed on demand."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.quality.checks import (
    CHECK_CROSS_TIMEFRAME,
    CHECK_DUPLICATES,
    CHECK_GAPS,
    CHECK_NON_FINITE,
    CHECK_NON_POSITIVE,
    CHECK_OHLC,
    CHECK_OUT_OF_ORDER,
    CHECK_SPIKES,
    CHECK_STALE,
    gap_anomaly,
    non_finite_anomaly,
    non_positive_anomaly,
    ohlc_anomaly,
    robust_zscore,
)
from tickmesh.analytics.quality.cross_timeframe import cross_timeframe_anomaly
from tickmesh.analytics.results import Anomaly, Quality
from tickmesh.core.timeframes import NS_PER_MINUTE, TimeframeSpec

NS_PER_SECOND = 1_000_000_000

DEFAULT_WEIGHTS: dict[str, float] = {
    CHECK_STALE: 2.0,
    CHECK_NON_FINITE: 2.0,
    CHECK_OHLC: 2.0,
    CHECK_NON_POSITIVE: 2.0,
    CHECK_CROSS_TIMEFRAME: 1.5,
    CHECK_SPIKES: 1.0,
    CHECK_GAPS: 1.0,
    CHECK_DUPLICATES: 0.5,
    CHECK_OUT_OF_ORDER: 0.5,
}


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the quality checks and the weight of each check in the score."""

    window_bars: int = 120
    stale_after_bars: int = 3
    spike_zscore: float = 10.0
    spike_min_returns: int = 20
    max_anomalies: int = 256
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


class QualityMonitor:
    """Observes every final bar of one symbol and timeframe (accepted or not) and scores recent data.

    A check is failed when it found an anomaly among the last `window_bars` bars (or, for
    staleness, duplicates and out-of-order inputs, at assessment time). The score is the
    weight of passed checks over the weight of evaluated ones.
    """

    def __init__(self, symbol: str, timeframe: TimeframeSpec, config: QualityConfig) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.config = config
        self._anomalies: deque[Anomaly] = deque(maxlen=config.max_anomalies)
        self._returns: deque[float] = deque(maxlen=config.window_bars)
        self._last_open_ns: int | None = None
        self._last_close: float | None = None
        self._cross_checked_ns: int | None = None

    def observe(self, bar: BarInput, minute_bars: Sequence[BarInput] = ()) -> list[Anomaly]:
        """Run the per-bar checks on a final bar and return the anomalies it raised.

        `minute_bars` are the final 1m bars covering this bar (for timeframes above 1m); the
        cross-timeframe check runs only when all of them are given.
        """
        found: list[Anomaly] = []
        duration = self.timeframe.duration_ns
        non_finite = non_finite_anomaly(bar)
        if non_finite is not None:
            found.append(non_finite)
        else:
            for check in (non_positive_anomaly(bar), ohlc_anomaly(bar)):
                if check is not None:
                    found.append(check)
        is_new = self._last_open_ns is None or bar.open_time_ns > self._last_open_ns
        if is_new:
            if self._last_open_ns is not None:
                gap = gap_anomaly(self._last_open_ns, bar, duration)
                if gap is not None:
                    found.append(gap)
            self._last_open_ns = bar.open_time_ns
            if non_finite is None and bar.close > 0.0:
                spike = self._spike(bar)
                if spike is not None:
                    found.append(spike)
        if minute_bars and duration > NS_PER_MINUTE and non_finite is None:
            compared, mismatch = cross_timeframe_anomaly(bar, minute_bars, duration)
            if compared:
                self._cross_checked_ns = bar.open_time_ns
            if mismatch is not None:
                found.append(mismatch)
        self._anomalies.extend(found)
        return found

    def _spike(self, bar: BarInput) -> Anomaly | None:
        previous = self._last_close
        self._last_close = bar.close
        if previous is None or previous <= 0.0:
            return None
        log_return = math.log(bar.close / previous)
        history = self._returns
        score = (
            robust_zscore(history, log_return)
            if len(history) >= self.config.spike_min_returns
            else None
        )
        history.append(log_return)
        if score is None or score < self.config.spike_zscore:
            return None
        return Anomaly(
            CHECK_SPIKES,
            bar.open_time_ns,
            f"log return {log_return:.6g} is {score:.1f} robust sigmas from the median",
        )

    def assess(self, now_ns: int, duplicate_count: int = 0, out_of_order_count: int = 0) -> Quality:
        """Return the quality at `now_ns`; counts of duplicate and out-of-order inputs come from the bar service."""
        duration = self.timeframe.duration_ns
        failed: set[str] = set()
        recent: list[Anomaly] = []
        if self._last_open_ns is not None:
            horizon = self._last_open_ns - self.config.window_bars * duration
            recent = [anomaly for anomaly in self._anomalies if anomaly.time_ns >= horizon]
        failed.update(anomaly.check for anomaly in recent)
        stale = self._stale(now_ns)
        if stale is not None:
            recent.append(stale)
        for check, count in (
            (CHECK_DUPLICATES, duplicate_count),
            (CHECK_OUT_OF_ORDER, out_of_order_count),
        ):
            if count > 0:
                recent.append(
                    Anomaly(check, now_ns, f"{count} input(s) reported by the bar service")
                )
        failed.update(anomaly.check for anomaly in recent)
        evaluated = [name for name in self.config.weights if self._evaluated(name)]
        passed = tuple(name for name in evaluated if name not in failed)
        failed_names = tuple(name for name in evaluated if name in failed)
        total = sum(self.config.weights[name] for name in evaluated)
        score = sum(self.config.weights[name] for name in passed) / total if total > 0 else 0.0
        return Quality(
            symbol=self.symbol,
            timeframe=self.timeframe.proto,
            time_ns=now_ns,
            score=score,
            checks_passed=passed,
            checks_failed=failed_names,
            anomalies=tuple(sorted(recent, key=lambda anomaly: anomaly.time_ns)),
        )

    def _evaluated(self, check: str) -> bool:
        if check != CHECK_CROSS_TIMEFRAME:
            return True
        if self._cross_checked_ns is None or self._last_open_ns is None:
            return False
        horizon = self._last_open_ns - self.config.window_bars * self.timeframe.duration_ns
        return self._cross_checked_ns >= horizon

    def _stale(self, now_ns: int) -> Anomaly | None:
        duration = self.timeframe.duration_ns
        if self._last_open_ns is None:
            return Anomaly(CHECK_STALE, now_ns, "no bar yet")
        closed_ns = self._last_open_ns + duration
        age_ns = now_ns - closed_ns
        if age_ns <= self.config.stale_after_bars * duration:
            return None
        return Anomaly(
            CHECK_STALE,
            now_ns,
            f"last bar closed {age_ns / NS_PER_SECOND:.0f}s ago "
            f"(limit {self.config.stale_after_bars} x {self.timeframe.label})",
        )
