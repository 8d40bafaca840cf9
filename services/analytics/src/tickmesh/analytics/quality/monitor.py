"""QualityMonitor: per instrument and timeframe data-quality state, observed per bar and assessed on demand.

Every final bar is observed (accepted for indicators or not). Checks of the bar alone (non-finite
or non-positive values, OHLC consistency, cross-timeframe roll-up, and the duplicate and
out-of-order trades the bar service counted in it) and checks against the bars before it (gaps,
price spikes by robust z-score of log returns) become anomalies at the bar's open time. A check
fails when it found an anomaly among the last `window_bars` bars.

Revisions and late bars rewind, like the indicator window: the monitor keeps what each bar
contributed, drops the bars from the revised one on, and observes the revised bar and the
later bars again (their own checks are kept, gaps and spikes recomputed with the revised
close). A revision that removes a spike removes its anomaly; one that does not keeps it once.

Staleness is judged on the stream's own clock, so replayed history is not stale for being old
and a live stream that stops is. The clock reads the newest bar's close plus the wall-clock
time since that bar was received: `assess(now_ns)` is called with the newest bar's close when
the bar arrives (never stale then), and GetQuality re-judges the stored assessment at request
time with `judge_staleness`. A stream is stale when no bar arrived for more than
`stale_after_bars` bar lengths of wall-clock time: a replay of 2024 trades is fresh while it
plays, whatever today's date, and any stream, live or replayed, turns stale once its bars stop.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.indicators import DEFAULT_CAPACITY, RevisionOutOfRangeError
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
    is_clean,
    non_finite_anomaly,
    non_positive_anomaly,
    ohlc_anomaly,
    robust_zscore,
    trade_order_anomalies,
)
from tickmesh.analytics.quality.cross_timeframe import cross_timeframe_anomaly
from tickmesh.analytics.quality.recent_returns import RecentReturns
from tickmesh.analytics.results import Anomaly, Quality
from tickmesh.core.instruments import InstrumentId
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


@dataclass(frozen=True, slots=True)
class _Observed:
    """What one bar contributed: its own findings (kept on a rewind) and those against the bars before."""

    open_time_ns: int
    close: float | None  # the close later returns start from; None when the bar cannot start one
    local: tuple[Anomaly, ...]
    cross_checked: bool
    log_return: float | None
    sequence: tuple[Anomaly, ...]


@dataclass(slots=True)
class _Base:
    """The state left by bars no longer kept: where a rewind to the oldest kept bar starts from."""

    last_open_ns: int | None = None
    last_close: float | None = None
    returns: list[float] = field(default_factory=list)
    cross_checked_ns: int | None = None
    dropped: int = 0


class QualityMonitor:
    """Observes every final bar of one instrument and timeframe and scores recent data.

    The score is the weight of passed checks over the weight of evaluated ones.
    """

    def __init__(
        self,
        instrument: InstrumentId,
        timeframe: TimeframeSpec,
        config: QualityConfig,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.instrument = instrument
        self.timeframe = timeframe
        self.config = config
        self._capacity = max(capacity, 1)
        self._observed: deque[_Observed] = deque()
        self._base = _Base()
        self._anomalies: deque[Anomaly] = deque(maxlen=config.max_anomalies)
        self._returns = RecentReturns(config.window_bars)
        self._last_open_ns: int | None = None
        self._last_close: float | None = None
        self._cross_checked_ns: int | None = None

    def observe(self, bar: BarInput, minute_bars: Sequence[BarInput] = ()) -> list[Anomaly]:
        """Run the checks on a final bar (new, revised or late) and return the anomalies it raised.

        `minute_bars` are the final 1m bars covering this bar (for timeframes above 1m); the
        cross-timeframe check runs only when all of them are given. A bar at or before the
        newest one rewinds to it first; RevisionOutOfRangeError when that is older than the
        bars kept (the caller rebuilds the stream from storage).
        """
        later = self._rewind(bar.open_time_ns)
        local: list[Anomaly] = []
        duration = self.timeframe.duration_ns
        non_finite = None
        if not is_clean(bar):
            non_finite = non_finite_anomaly(bar)
            if non_finite is not None:
                local.append(non_finite)
            else:
                for check in (non_positive_anomaly(bar), ohlc_anomaly(bar)):
                    if check is not None:
                        local.append(check)
            local.extend(trade_order_anomalies(bar))
        cross_checked = False
        if minute_bars and duration > NS_PER_MINUTE and non_finite is None:
            cross_checked, mismatch = cross_timeframe_anomaly(bar, minute_bars, duration)
            if mismatch is not None:
                local.append(mismatch)
        close = bar.close if non_finite is None and bar.close > 0.0 else None
        observed = self._append(bar.open_time_ns, close, tuple(local), cross_checked)
        for old in later:
            self._append(old.open_time_ns, old.close, old.local, old.cross_checked)
        return [*observed.local, *observed.sequence]

    def recheck_cross(self, bar: BarInput, minute_bars: Sequence[BarInput]) -> bool:
        """Re-run the cross-timeframe check of an observed bar on newer 1m bars; True if it changed.

        The bar service may persist (and stream) a 15m, 1h or 1d bar before the 1m bar that
        completes or revises it; the caller rechecks once those 1m bars are in. A bar never
        compared may fail here; one already compared is only cleared, because a revised 1m bar
        can also come first and the revision of the higher bar is then still on its way.
        """
        duration = self.timeframe.duration_ns
        if duration <= NS_PER_MINUTE or non_finite_anomaly(bar) is not None:
            return False
        position = next(
            (
                index
                for index in range(len(self._observed) - 1, -1, -1)
                if self._observed[index].open_time_ns <= bar.open_time_ns
            ),
            None,
        )
        if position is None or self._observed[position].open_time_ns != bar.open_time_ns:
            return False
        compared, mismatch = cross_timeframe_anomaly(bar, minute_bars, duration)
        old = self._observed[position]
        if not compared or (mismatch is not None and old.cross_checked):
            return False
        kept = tuple(anomaly for anomaly in old.local if anomaly.check != CHECK_CROSS_TIMEFRAME)
        local = kept if mismatch is None else (*kept, mismatch)
        if local == old.local and old.cross_checked:
            return False
        self._observed[position] = replace(old, local=local, cross_checked=True)
        while self._anomalies and self._anomalies[-1].time_ns >= bar.open_time_ns:
            self._anomalies.pop()
        for index in range(position, len(self._observed)):
            self._anomalies.extend(self._observed[index].local)
            self._anomalies.extend(self._observed[index].sequence)
        if self._cross_checked_ns is None or bar.open_time_ns > self._cross_checked_ns:
            self._cross_checked_ns = bar.open_time_ns
        return True

    def _append(
        self, open_time_ns: int, close: float | None, local: tuple[Anomaly, ...], cross: bool
    ) -> _Observed:
        """Add a bar after the newest one: gap and spike checks, then the live state."""
        sequence: list[Anomaly] = []
        if self._last_open_ns is not None:
            gap = gap_anomaly(self._last_open_ns, open_time_ns, self.timeframe.duration_ns)
            if gap is not None:
                sequence.append(gap)
        self._last_open_ns = open_time_ns
        log_return = None
        if close is not None:
            previous = self._last_close
            self._last_close = close
            if previous is not None and previous > 0.0:
                log_return = math.log(close / previous)
                spike = self._spike(open_time_ns, log_return)
                if spike is not None:
                    sequence.append(spike)
        if cross:
            self._cross_checked_ns = open_time_ns
        observed = _Observed(open_time_ns, close, local, cross, log_return, tuple(sequence))
        if len(self._observed) >= self._capacity:
            self._forget(self._observed.popleft())
        self._observed.append(observed)
        self._anomalies.extend(local)
        self._anomalies.extend(observed.sequence)
        return observed

    def _spike(self, open_time_ns: int, log_return: float) -> Anomaly | None:
        history = self._returns
        score = (
            robust_zscore(history.values, log_return)
            if len(history) >= self.config.spike_min_returns
            else None
        )
        history.append(log_return)
        if score is None or score < self.config.spike_zscore:
            return None
        return Anomaly(
            CHECK_SPIKES,
            open_time_ns,
            f"log return {log_return:.6g} is {score:.1f} robust sigmas from the median",
        )

    def _forget(self, oldest: _Observed) -> None:
        """Fold the oldest kept bar into the base state (a rewind cannot reach before it anymore)."""
        base = self._base
        base.dropped += 1
        base.last_open_ns = oldest.open_time_ns
        if oldest.close is not None:
            base.last_close = oldest.close
        if oldest.log_return is not None:
            base.returns.append(oldest.log_return)
            del base.returns[: -self.config.window_bars]
        if oldest.cross_checked:
            base.cross_checked_ns = oldest.open_time_ns

    def _rewind(self, open_time_ns: int) -> list[_Observed]:
        """Drop the bars opening at or after `open_time_ns`; return those after it, oldest first."""
        observed = self._observed
        if not observed or open_time_ns > observed[-1].open_time_ns:
            return []
        if open_time_ns < observed[0].open_time_ns and self._base.dropped:
            raise RevisionOutOfRangeError(
                f"{self.instrument}: quality of the bar at {open_time_ns} is older than the "
                f"{len(observed)} bars kept"
            )
        dropped: list[_Observed] = []
        while observed and observed[-1].open_time_ns >= open_time_ns:
            dropped.append(observed.pop())
        while self._anomalies and self._anomalies[-1].time_ns >= open_time_ns:
            self._anomalies.pop()
        self._restore()
        dropped.reverse()
        return [old for old in dropped if old.open_time_ns > open_time_ns]

    def _restore(self) -> None:
        """Recompute the live state from the base and the bars still kept."""
        base = self._base
        self._last_open_ns = (
            self._observed[-1].open_time_ns if self._observed else base.last_open_ns
        )
        self._last_close = base.last_close
        self._cross_checked_ns = base.cross_checked_ns
        self._returns = RecentReturns(self.config.window_bars, base.returns)
        for kept in self._observed:
            if kept.close is not None:
                self._last_close = kept.close
            if kept.log_return is not None:
                self._returns.append(kept.log_return)
            if kept.cross_checked:
                self._cross_checked_ns = kept.open_time_ns

    def assess(self, now_ns: int) -> Quality:
        """Return the quality on the stream's clock `now_ns` (see the module docstring)."""
        duration = self.timeframe.duration_ns
        recent: list[Anomaly] = []
        if self._last_open_ns is not None:
            horizon = self._last_open_ns - self.config.window_bars * duration
            recent = [anomaly for anomaly in self._anomalies if anomaly.time_ns >= horizon]
        stale = self._stale(now_ns)
        if stale is not None:
            recent.append(stale)
        cross = self._evaluated(CHECK_CROSS_TIMEFRAME)
        evaluated = tuple(
            name for name in self.config.weights if cross or name != CHECK_CROSS_TIMEFRAME
        )
        if recent:
            failed = {anomaly.check for anomaly in recent}
            passed = tuple(name for name in evaluated if name not in failed)
            failing = tuple(name for name in evaluated if name in failed)
        else:
            passed, failing = evaluated, ()
        # Built once with its score (as `scored` computes it): dataclasses.replace costs ~2 us a bar.
        return Quality(
            instrument=self.instrument,
            timeframe=self.timeframe.proto,
            time_ns=now_ns,
            score=_score(passed, failing, self.config.weights),
            checks_passed=passed,
            checks_failed=failing,
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
        if self._last_open_ns is None:
            return Anomaly(CHECK_STALE, now_ns, "no bar yet")
        return stale_anomaly(
            self._last_open_ns + self.timeframe.duration_ns, now_ns, self.timeframe, self.config
        )


def scored(quality: Quality, config: QualityConfig) -> Quality:
    """Return `quality` with its score: the weight of passed checks over that of evaluated ones."""
    score = _score(quality.checks_passed, quality.checks_failed, config.weights)
    return replace(quality, score=score)


def _score(passed: Sequence[str], failed: Sequence[str], weights: dict[str, float]) -> float:
    total = sum(weights.get(name, 0.0) for name in (*passed, *failed))
    return sum(weights.get(name, 0.0) for name in passed) / total if total > 0 else 0.0


def stale_anomaly(
    closed_ns: int, now_ns: int, timeframe: TimeframeSpec, config: QualityConfig
) -> Anomaly | None:
    """Return a stale anomaly when the stream clock `now_ns` is too far past the newest bar's close."""
    age_ns = now_ns - closed_ns
    if age_ns <= config.stale_after_bars * timeframe.duration_ns:
        return None
    return Anomaly(
        CHECK_STALE,
        now_ns,
        f"last bar closed {age_ns / NS_PER_SECOND:.0f}s ago "
        f"(limit {config.stale_after_bars} x {timeframe.label})",
    )


def judge_staleness(
    quality: Quality,
    received_ns: int | None,
    wall_now_ns: int,
    timeframe: TimeframeSpec,
    config: QualityConfig,
) -> Quality:
    """Re-judge a stored assessment's staleness at wall-clock time `wall_now_ns`.

    The stored assessment was made on the stream's clock when its newest bar was received (at
    `received_ns`, wall clock); the clock has since run on by the wall-clock time elapsed. An
    assessment without a receive time (stored before it was recorded) is returned unchanged.
    """
    if received_ns is None or CHECK_STALE in quality.checks_failed:
        return quality
    clock_ns = quality.time_ns + max(0, wall_now_ns - received_ns)
    stale = stale_anomaly(quality.time_ns, clock_ns, timeframe, config)
    if stale is None:
        return quality
    return scored(
        replace(
            quality,
            checks_passed=tuple(name for name in quality.checks_passed if name != CHECK_STALE),
            checks_failed=tuple(
                name for name in config.weights if name in {*quality.checks_failed, CHECK_STALE}
            ),
            anomalies=(*quality.anomalies, stale),
        ),
        config,
    )
