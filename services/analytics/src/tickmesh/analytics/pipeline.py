"""InstrumentAnalytics: indicators, features and quality of one instrument and timeframe, fed one final bar at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tickmesh.analytics.bars import BarInput, rejection_reason
from tickmesh.analytics.features import compute_features
from tickmesh.analytics.indicators import DEFAULT_CAPACITY, IndicatorWindow
from tickmesh.analytics.quality import QualityConfig, QualityMonitor
from tickmesh.analytics.results import Anomaly, Features, Indicators, Quality
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import TimeframeSpec


@dataclass(frozen=True, slots=True)
class BarAnalytics:
    """Everything one final bar produced.

    `indicators` and `features` hold one entry per bar (re)computed, oldest first: the bar
    itself, plus for a revision or a late bar every later bar replayed after it. Both are
    empty when the bar was rejected (`rejection` says why; the caller logs it with the bar's
    key). `anomalies` are what the per-bar quality checks found in this bar. `revisions` holds
    the bar revision each entry of `indicators` was computed from.
    """

    indicators: tuple[Indicators, ...]
    features: tuple[Features, ...]
    quality: Quality
    anomalies: tuple[Anomaly, ...]
    rejection: str | None
    revisions: tuple[int, ...] = ()


class InstrumentAnalytics:
    """The analytics state of one instrument and timeframe; pure, no I/O, one instance per stream."""

    def __init__(
        self,
        instrument: InstrumentId,
        timeframe: TimeframeSpec,
        capacity: int = DEFAULT_CAPACITY,
        quality_config: QualityConfig | None = None,
    ) -> None:
        self.instrument = instrument
        self.timeframe = timeframe
        self.window = IndicatorWindow(instrument, timeframe.proto, capacity)
        self.quality = QualityMonitor(
            instrument, timeframe, quality_config or QualityConfig(), capacity
        )
        # Revisions of the kept bars that have one (most have none): the window keeps prices
        # only, and a recomputation must say which revision each later bar was.
        self._revisions: dict[int, int] = {}
        self._capacity = capacity

    def note_revision(self, bar: BarInput) -> None:
        """Remember a kept bar's revision (bars fed as history as well as live ones)."""
        if bar.revision > 0:
            self._revisions[bar.open_time_ns] = bar.revision
            if len(self._revisions) > 2 * self._capacity:
                bars = self.window.bars
                oldest = int(bars.open_time[0]) if len(bars) else bar.open_time_ns
                self._revisions = {t: r for t, r in self._revisions.items() if t >= oldest}

    def on_bar(
        self, bar: BarInput, now_ns: int, *, minute_bars: Sequence[BarInput] = ()
    ) -> BarAnalytics:
        """Feed one final bar (new, revised or late) and return its indicators, features and quality.

        Quality is assessed on the stream's clock `now_ns` (the newest bar's close when it
        arrives); the bar's own duplicate and out-of-order trade counts feed its checks.
        `minute_bars` are the final 1m bars of this bar's span, for the cross-timeframe check.
        A revision rewinds indicators, features and quality alike and recomputes them from the
        revised bar on. Raises RevisionOutOfRangeError when it reaches past the bars kept.
        """
        anomalies = tuple(self.quality.observe(bar, minute_bars))
        reason = rejection_reason(bar)
        window = self.window
        replay = window.rewind(bar.open_time_ns)
        replay = [later for later in replay if later.open_time_ns > bar.open_time_ns]
        to_apply = replay if reason is not None else [bar, *replay]
        self.note_revision(bar)
        revisions = tuple(self._revisions.get(item.open_time_ns, 0) for item in to_apply)
        indicators: list[Indicators] = []
        features: list[Features] = []
        for item in to_apply:
            previous = window.latest
            current = window.append(item)
            indicators.append(current)
            features.append(compute_features(window.bars, current, previous))
        quality = self.quality.assess(now_ns)
        return BarAnalytics(
            tuple(indicators), tuple(features), quality, anomalies, reason, revisions
        )

    def minute_bars_between(self, start_ns: int, end_ns: int) -> list[BarInput]:
        """Return the kept bars opening in [start_ns, end_ns), for a higher timeframe's cross check."""
        bars = self.window.bars
        first = bars.index_at_or_after(start_ns)
        last = bars.index_at_or_after(end_ns)
        return [bars.bar(index) for index in range(first, last)]
