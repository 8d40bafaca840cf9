"""Quality rewinds on revisions and late bars, rechecks roll-ups, judges staleness on the stream's clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.engine import AnalyticsEngine
from tickmesh.analytics.indicators import RevisionOutOfRangeError
from tickmesh.analytics.pipeline import InstrumentAnalytics
from tickmesh.analytics.quality import (
    CHECK_CROSS_TIMEFRAME,
    CHECK_GAPS,
    CHECK_SPIKES,
    CHECK_STALE,
    QualityConfig,
    QualityMonitor,
    judge_staleness,
)
from tickmesh.analytics.results import Quality
from tickmesh.core.timeframes import from_label
from tickmesh.v2 import market_pb2

from .domain_helpers import TEST, XRPETH_SPOT, exact_text

Walk = Callable[[int, int], list[BarInput]]
MINUTE = 60_000_000_000
ONE_MINUTE = from_label("1m")


def fresh_quality(bars: list[BarInput], now_ns: int) -> Quality:
    """The quality of a monitor that only ever saw `bars`, in order."""
    monitor = QualityMonitor(TEST, ONE_MINUTE, QualityConfig())
    for bar in bars:
        monitor.observe(bar)
    return monitor.assess(now_ns)


def with_spike(bar: BarInput) -> BarInput:
    """The bar with its close (and high) half again above where it was."""
    return replace(bar, close=bar.close * 1.5, high=bar.close * 1.5)


def feed(analytics: InstrumentAnalytics, bars: list[BarInput]) -> Quality:
    """Feed bars as final bars; return the last quality."""
    for bar in bars:
        result = analytics.on_bar(bar, bar.open_time_ns + MINUTE)
    return result.quality


def test_revision_that_removes_a_spike_removes_its_anomaly(make_random_walk: Walk) -> None:
    bars = make_random_walk(100, 7)
    spiked = [*bars[:80], with_spike(bars[80]), *bars[81:]]
    analytics = InstrumentAnalytics(TEST, ONE_MINUTE)
    before = feed(analytics, spiked)
    assert CHECK_SPIKES in before.checks_failed
    assert bars[80].open_time_ns in {a.time_ns for a in before.anomalies if a.check == CHECK_SPIKES}

    now = bars[-1].open_time_ns + MINUTE
    result = analytics.on_bar(replace(bars[80], revision=1), now)
    assert CHECK_SPIKES in result.quality.checks_passed
    assert not [a for a in result.quality.anomalies if a.check == CHECK_SPIKES]
    assert result.quality == fresh_quality(bars, now)
    assert result.anomalies == ()


def test_revision_that_keeps_a_spike_keeps_it_exactly_once(make_random_walk: Walk) -> None:
    bars = make_random_walk(100, 7)
    spiked = [*bars[:80], with_spike(bars[80]), *bars[81:]]
    analytics = InstrumentAnalytics(TEST, ONE_MINUTE)
    feed(analytics, spiked)
    now = bars[-1].open_time_ns + MINUTE
    revised = replace(spiked[80], volume=spiked[80].volume + 1.0, revision=1)
    for revision in (revised, replace(revised, revision=2)):
        result = analytics.on_bar(revision, now)
        spikes = [a for a in result.quality.anomalies if a.check == CHECK_SPIKES]
        assert [a.time_ns for a in spikes].count(bars[80].open_time_ns) == 1
        assert result.quality == fresh_quality([*spiked[:80], revision, *spiked[81:]], now)
        assert [a.check for a in result.anomalies] == [CHECK_SPIKES]


def test_late_bar_filling_a_gap_removes_the_gap(make_random_walk: Walk) -> None:
    bars = make_random_walk(60, 4)
    monitor = QualityMonitor(TEST, ONE_MINUTE, QualityConfig())
    for bar in bars[:30] + bars[31:]:
        monitor.observe(bar)
    now = bars[-1].open_time_ns + MINUTE
    assert CHECK_GAPS in monitor.assess(now).checks_failed
    monitor.observe(bars[30])
    assert monitor.assess(now) == fresh_quality(bars, now)
    assert CHECK_GAPS in monitor.assess(now).checks_passed


def test_random_revisions_give_the_quality_of_the_final_series(make_random_walk: Walk) -> None:
    rng = np.random.default_rng(3)
    bars = make_random_walk(400, 11)
    final = list(bars)
    monitor = QualityMonitor(TEST, ONE_MINUTE, QualityConfig(), capacity=250)
    for index, bar in enumerate(bars):
        monitor.observe(bar)
        if index > 30 and rng.random() < 0.2:
            back = index - int(rng.integers(0, 25))
            scale = float(rng.choice([0.6, 0.98, 1.0, 1.02, 1.7]))
            revised = replace(
                final[back],
                close=final[back].close * scale,
                high=max(final[back].high, final[back].close * scale),
                low=min(final[back].low, final[back].close * scale),
                duplicate_trades=int(rng.integers(0, 2)),
                revision=final[back].revision + 1,
            )
            final[back] = revised
            monitor.observe(revised)
            now = bar.open_time_ns + MINUTE
            assert monitor.assess(now) == fresh_quality(final[: index + 1], now)


def test_revision_older_than_the_bars_kept_asks_for_a_rebuild(make_random_walk: Walk) -> None:
    bars = make_random_walk(50, 5)
    monitor = QualityMonitor(TEST, ONE_MINUTE, QualityConfig(), capacity=20)
    for bar in bars:
        monitor.observe(bar)
    monitor.observe(replace(bars[30], revision=1))  # still kept
    with pytest.raises(RevisionOutOfRangeError):
        monitor.observe(replace(bars[10], revision=1))


def test_staleness_runs_on_the_stream_clock_replay_fresh_stopped_stream_stale(
    make_random_walk: Walk,
) -> None:
    # A 2019-dated stream assessed when its newest bar arrived, at wall clock `received`.
    start_2019 = 1_570_752_000 * 1_000_000_000
    bars = make_random_walk(30, 2)
    bars = [replace(bar, open_time_ns=start_2019 + i * MINUTE) for i, bar in enumerate(bars)]
    closed = bars[-1].open_time_ns + MINUTE
    stored = fresh_quality(bars, closed)
    assert CHECK_STALE in stored.checks_passed
    received = 1_790_000_000 * 1_000_000_000
    config = QualityConfig()
    # Years behind the wall clock, but bars still arriving: fresh.
    judged = judge_staleness(stored, received, received + 2 * MINUTE, ONE_MINUTE, config)
    assert judged == stored
    # No bar for longer than three 1m bars of wall-clock time: stale, and scored as such.
    quiet = judge_staleness(stored, received, received + 3 * MINUTE + 1, ONE_MINUTE, config)
    assert CHECK_STALE in quiet.checks_failed
    assert CHECK_STALE not in quiet.checks_passed
    assert quiet.score < stored.score
    (stale,) = [a for a in quiet.anomalies if a.check == CHECK_STALE]
    assert stale.time_ns == closed + 3 * MINUTE + 1
    # A row stored before receive times were recorded is served as stored.
    assert judge_staleness(stored, None, received + 10**12, ONE_MINUTE, config) == stored


def _proto(bar: BarInput, timeframe: int, change_id: int, revision: int = 0) -> market_pb2.Bar:
    return market_pb2.Bar(
        symbol=XRPETH_SPOT.symbol,
        exchange=market_pb2.Exchange.ValueType(XRPETH_SPOT.exchange),
        timeframe=market_pb2.Timeframe.ValueType(timeframe),
        open_time_ns=bar.open_time_ns,
        open=exact_text(bar.open),
        high=exact_text(bar.high),
        low=exact_text(bar.low),
        close=exact_text(bar.close),
        volume=exact_text(bar.volume),
        final=True,
        revision=revision,
        change_id=change_id,
    )


def test_higher_bar_before_its_last_minute_is_checked_once_the_minute_arrives(
    xrpeth_minute_bars: list[BarInput], xrpeth_five_minute_bars: list[BarInput]
) -> None:
    # The bar service gives a commit's 15m/1h/1d bars smaller change ids than its 1m bars
    # ("15m" < "1m"): here every 5m bar arrives before the minute that completes it.
    engine = AnalyticsEngine()
    minute_key, five_key = (
        (XRPETH_SPOT, market_pb2.TIMEFRAME_1M),
        (XRPETH_SPOT, market_pb2.TIMEFRAME_5M),
    )
    engine.warm(minute_key)
    engine.warm(five_key)
    fives = {bar.open_time_ns: bar for bar in xrpeth_five_minute_bars}
    minutes = xrpeth_minute_bars[:200]
    change_id = 0
    rechecked = []
    for minute in minutes:
        bucket = minute.open_time_ns - minute.open_time_ns % (5 * MINUTE)
        if minute.open_time_ns == bucket + 4 * MINUTE:
            change_id += 1
            early = engine.process(_proto(fives[bucket], market_pb2.TIMEFRAME_5M, change_id))
            assert CHECK_CROSS_TIMEFRAME not in early.quality.checks_failed
        change_id += 1
        engine.process(_proto(minute, market_pb2.TIMEFRAME_1M, change_id))
        rechecked += engine.take_rechecked()
    assert len(rechecked) == len(minutes) // 5
    assert all(CHECK_CROSS_TIMEFRAME in q.checks_passed for q in rechecked)

    # A late trade revises minute 4 of a bucket and its 5m bar; the 5m revision comes first.
    bucket = minutes[100].open_time_ns
    last = minutes[104]
    higher = last.high * 1.01
    revised_minute = replace(last, close=higher, high=higher)
    five = fives[bucket]
    revised_five = replace(five, close=higher, high=max(five.high, higher))
    first = engine.process(_proto(revised_five, market_pb2.TIMEFRAME_5M, change_id + 1, 1))
    assert CHECK_CROSS_TIMEFRAME in first.quality.checks_failed  # against the old minute
    engine.process(_proto(revised_minute, market_pb2.TIMEFRAME_1M, change_id + 2, 1))
    (after,) = engine.take_rechecked()
    assert after.timeframe == market_pb2.TIMEFRAME_5M
    assert after.time_ns == first.quality.time_ns
    assert CHECK_CROSS_TIMEFRAME in after.checks_passed
    assert not [a for a in after.anomalies if a.check == CHECK_CROSS_TIMEFRAME]


def test_revised_minute_arriving_before_its_5m_revision_flags_nothing(
    xrpeth_minute_bars: list[BarInput], xrpeth_five_minute_bars: list[BarInput]
) -> None:
    # 5m sorts after 1m: the revised minute comes first and must not flag the old 5m bar.
    engine = AnalyticsEngine()
    minute_key, five_key = (
        (XRPETH_SPOT, market_pb2.TIMEFRAME_1M),
        (XRPETH_SPOT, market_pb2.TIMEFRAME_5M),
    )
    engine.warm(minute_key)
    engine.warm(five_key)
    fives = {bar.open_time_ns: bar for bar in xrpeth_five_minute_bars}
    minutes = xrpeth_minute_bars[:50]
    for change_id, minute in enumerate(minutes, start=1):
        engine.process(_proto(minute, market_pb2.TIMEFRAME_1M, change_id))
        bucket = minute.open_time_ns - minute.open_time_ns % (5 * MINUTE)
        if minute.open_time_ns == bucket + 4 * MINUTE:
            engine.process(_proto(fives[bucket], market_pb2.TIMEFRAME_5M, 1000 + change_id))
    assert engine.take_rechecked() == []
    last = minutes[24]
    higher = last.high * 1.01
    engine.process(_proto(replace(last, close=higher, high=higher), market_pb2.TIMEFRAME_1M, 99, 1))
    assert engine.take_rechecked() == []
    five = fives[minutes[20].open_time_ns]
    revised = replace(five, close=higher, high=max(five.high, higher))
    result = engine.process(_proto(revised, market_pb2.TIMEFRAME_5M, 2000, 1))
    assert CHECK_CROSS_TIMEFRAME in result.quality.checks_passed
