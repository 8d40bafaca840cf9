"""Data quality: each check failing and passing, cross-timeframe on real Binance XRPETH klines, scoring."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.quality import (
    CHECK_CROSS_TIMEFRAME,
    CHECK_DUPLICATES,
    CHECK_GAPS,
    CHECK_NON_FINITE,
    CHECK_NON_POSITIVE,
    CHECK_OHLC,
    CHECK_OUT_OF_ORDER,
    CHECK_SPIKES,
    CHECK_STALE,
    QualityConfig,
    QualityMonitor,
    cross_timeframe_anomaly,
    roll_up,
)
from tickmesh.analytics.quality.checks import (
    is_clean,
    non_finite_anomaly,
    non_positive_anomaly,
    ohlc_anomaly,
    robust_zscore,
    trade_order_anomalies,
)
from tickmesh.analytics.quality.recent_returns import RecentReturns
from tickmesh.core.timeframes import from_label

from .domain_helpers import TEST, XRPETH_SPOT

Walk = Callable[[int, int], list[BarInput]]
MINUTE = 60_000_000_000
FIVE_MINUTES = 5 * MINUTE


def monitor_after(bars: list[BarInput], label: str = "1m") -> QualityMonitor:
    """A monitor that has observed `bars`."""
    monitor = QualityMonitor(TEST, from_label(label), QualityConfig())
    for bar in bars:
        monitor.observe(bar)
    return monitor


def now_after(bars: list[BarInput]) -> int:
    """A time just after the last bar closed."""
    return bars[-1].open_time_ns + MINUTE + 1


def test_quality_clean_walk_passes_every_evaluated_check(make_random_walk: Walk) -> None:
    bars = make_random_walk(200, 1)
    quality = monitor_after(bars).assess(now_after(bars))
    assert quality.score == 1.0
    assert quality.checks_failed == ()
    assert quality.anomalies == ()
    assert set(quality.checks_passed) == {
        CHECK_STALE,
        CHECK_NON_FINITE,
        CHECK_OHLC,
        CHECK_NON_POSITIVE,
        CHECK_SPIKES,
        CHECK_GAPS,
        CHECK_DUPLICATES,
        CHECK_OUT_OF_ORDER,
    }


@pytest.mark.parametrize(
    ("check", "change"),
    [
        (CHECK_NON_FINITE, {"close": float("nan")}),
        (CHECK_NON_FINITE, {"volume": float("inf")}),
        (CHECK_NON_POSITIVE, {"low": 0.0}),
        (CHECK_NON_POSITIVE, {"volume": -3.0}),
        (CHECK_OHLC, {"high": 1.0}),
        (CHECK_OHLC, {"low": 1e6, "high": 2e6}),
    ],
)
def test_quality_bad_bar_fails_its_check_with_anomaly(
    make_random_walk: Walk, check: str, change: dict[str, float]
) -> None:
    bars = make_random_walk(60, 2)
    base = bars[50]
    fields = {"open": base.open, "high": base.high, "low": base.low, "close": base.close}
    fields["volume"] = base.volume
    fields.update(change)
    bars[50] = BarInput(
        base.open_time_ns,
        fields["open"],
        fields["high"],
        fields["low"],
        fields["close"],
        fields["volume"],
    )
    quality = monitor_after(bars).assess(now_after(bars))
    assert check in quality.checks_failed
    assert check not in quality.checks_passed
    assert any(a.check == check and a.time_ns == base.open_time_ns for a in quality.anomalies)
    assert quality.score < 1.0


def test_quality_zero_volume_without_trades_is_a_flat_not_an_anomaly(
    make_random_walk: Walk,
) -> None:
    bars = make_random_walk(60, 3)
    bars[40] = replace(bars[40], volume=0.0, trade_count=0)
    assert CHECK_NON_POSITIVE in monitor_after(bars).assess(now_after(bars)).checks_passed
    bars[40] = replace(bars[40], volume=0.0, trade_count=7)
    assert CHECK_NON_POSITIVE in monitor_after(bars).assess(now_after(bars)).checks_failed


def test_quality_missing_bars_fail_gaps_check(make_random_walk: Walk) -> None:
    bars = make_random_walk(60, 4)
    quality = monitor_after(bars[:30] + bars[33:]).assess(now_after(bars))
    assert CHECK_GAPS in quality.checks_failed
    gap = next(a for a in quality.anomalies if a.check == CHECK_GAPS)
    assert gap.time_ns == bars[33].open_time_ns
    assert gap.detail.startswith("3 missing")


def test_quality_old_last_bar_fails_stale_check(make_random_walk: Walk) -> None:
    bars = make_random_walk(40, 5)
    monitor = monitor_after(bars)
    closed = bars[-1].open_time_ns + MINUTE
    assert CHECK_STALE in monitor.assess(closed + 3 * MINUTE).checks_passed
    late = monitor.assess(closed + 3 * MINUTE + 1)
    assert CHECK_STALE in late.checks_failed
    assert any(a.check == CHECK_STALE for a in late.anomalies)


def test_quality_no_bars_yet_is_stale() -> None:
    quality = QualityMonitor(TEST, from_label("1m"), QualityConfig()).assess(10**18)
    assert CHECK_STALE in quality.checks_failed


def test_quality_bar_with_duplicate_and_out_of_order_trades_fails_their_checks(
    make_random_walk: Walk,
) -> None:
    bars = make_random_walk(40, 6)
    bars[30] = replace(bars[30], duplicate_trades=2, out_of_order_trades=1)
    quality = monitor_after(bars).assess(now_after(bars))
    assert set(quality.checks_failed) == {CHECK_DUPLICATES, CHECK_OUT_OF_ORDER}
    found = {a.check: a for a in quality.anomalies}
    assert found[CHECK_DUPLICATES].time_ns == bars[30].open_time_ns
    assert found[CHECK_DUPLICATES].detail.startswith("2 duplicate trade(s)")
    assert found[CHECK_OUT_OF_ORDER].detail.startswith("1 trade(s) arrived after a later")
    clean = monitor_after(make_random_walk(40, 6)).assess(now_after(bars))
    assert {CHECK_DUPLICATES, CHECK_OUT_OF_ORDER} <= set(clean.checks_passed)
    # Like every per-bar finding, it stops failing once it is older than the window.
    later = make_random_walk(200, 6)
    later[30] = replace(later[30], duplicate_trades=2)
    assert CHECK_DUPLICATES in monitor_after(later).assess(now_after(later)).checks_passed


def test_quality_price_jump_fails_spike_check_and_normal_moves_pass(make_random_walk: Walk) -> None:
    bars = make_random_walk(100, 7)
    assert CHECK_SPIKES in monitor_after(bars).assess(now_after(bars)).checks_passed
    jump = bars[80]
    bars[80] = replace(jump, close=jump.close * 1.5, high=jump.close * 1.5)
    quality = monitor_after(bars).assess(now_after(bars))
    assert CHECK_SPIKES in quality.checks_failed
    assert any(
        a.check == CHECK_SPIKES and a.time_ns == jump.open_time_ns for a in quality.anomalies
    )


def test_quality_anomalies_older_than_window_no_longer_fail(make_random_walk: Walk) -> None:
    bars = make_random_walk(300, 8)
    bars[10] = replace(bars[10], high=bars[10].low / 2)
    quality = monitor_after(bars).assess(now_after(bars))
    assert CHECK_OHLC in quality.checks_passed


def test_roll_up_xrpeth_minute_klines_equal_binance_five_minute_klines(
    xrpeth_minute_bars: list[BarInput], xrpeth_five_minute_bars: list[BarInput]
) -> None:
    assert len(xrpeth_five_minute_bars) == 712
    by_bucket: dict[int, list[BarInput]] = {}
    for bar in xrpeth_minute_bars:
        by_bucket.setdefault(bar.open_time_ns - bar.open_time_ns % FIVE_MINUTES, []).append(bar)
    flats_seen = 0
    for five in xrpeth_five_minute_bars:
        minute_bars = by_bucket[five.open_time_ns]
        flats_seen += sum(bar.is_flat for bar in minute_bars)
        compared, anomaly = cross_timeframe_anomaly(five, minute_bars, FIVE_MINUTES)
        assert compared
        assert anomaly is None, anomaly
    assert flats_seen > 0


def test_roll_up_naive_open_including_flats_disagrees_with_binance(
    xrpeth_minute_bars: list[BarInput], xrpeth_five_minute_bars: list[BarInput]
) -> None:
    # Guards the flat-skipping rule: treating flats as trades breaks some 5m opens.
    minute_index = {bar.open_time_ns: bar for bar in xrpeth_minute_bars}
    wrong = 0
    for five in xrpeth_five_minute_bars:
        first = minute_index[five.open_time_ns]
        if first.open != five.open:
            wrong += 1
    assert wrong > 0


def test_quality_five_minute_monitor_passes_cross_timeframe_on_real_klines(
    xrpeth_minute_bars: list[BarInput], xrpeth_five_minute_bars: list[BarInput]
) -> None:
    monitor = QualityMonitor(XRPETH_SPOT, from_label("5m"), QualityConfig())
    for five in xrpeth_five_minute_bars[-150:]:
        start = five.open_time_ns
        minute_bars = [
            b for b in xrpeth_minute_bars if start <= b.open_time_ns < start + FIVE_MINUTES
        ]
        monitor.observe(five, minute_bars)
    quality = monitor.assess(xrpeth_five_minute_bars[-1].open_time_ns + FIVE_MINUTES)
    assert CHECK_CROSS_TIMEFRAME in quality.checks_passed


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume"])
def test_cross_timeframe_hand_altered_five_minute_bar_fails(
    xrpeth_minute_bars: list[BarInput], xrpeth_five_minute_bars: list[BarInput], field: str
) -> None:
    five = next(bar for bar in xrpeth_five_minute_bars if bar.volume > 0)
    minute_bars = [
        b
        for b in xrpeth_minute_bars
        if five.open_time_ns <= b.open_time_ns < five.open_time_ns + FIVE_MINUTES
    ]
    values = {"open": five.open, "high": five.high, "low": five.low, "close": five.close}
    values["volume"] = five.volume
    values[field] *= 1.001
    altered = BarInput(
        five.open_time_ns,
        values["open"],
        values["high"],
        values["low"],
        values["close"],
        values["volume"],
    )
    compared, anomaly = cross_timeframe_anomaly(altered, minute_bars, FIVE_MINUTES)
    assert compared
    assert anomaly is not None
    assert anomaly.check == CHECK_CROSS_TIMEFRAME
    assert field in anomaly.detail
    monitor = QualityMonitor(XRPETH_SPOT, from_label("5m"), QualityConfig())
    monitor.observe(altered, minute_bars)
    quality = monitor.assess(five.open_time_ns + FIVE_MINUTES)
    assert CHECK_CROSS_TIMEFRAME in quality.checks_failed


def test_roll_up_missing_minute_bar_cannot_compare(xrpeth_minute_bars: list[BarInput]) -> None:
    start = xrpeth_minute_bars[0].open_time_ns
    bucket = xrpeth_minute_bars[:5]
    assert roll_up(bucket, start, FIVE_MINUTES) is not None
    assert roll_up(bucket[:4], start, FIVE_MINUTES) is None
    five = BarInput(start, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert cross_timeframe_anomaly(five, bucket[:4], FIVE_MINUTES) == (False, None)


def test_quality_to_proto_keeps_checks_and_anomalies(make_random_walk: Walk) -> None:
    bars = make_random_walk(40, 9)
    bars[20] = replace(bars[20], high=bars[20].low / 2, duplicate_trades=1)
    quality = monitor_after(bars).assess(now_after(bars))
    message = quality.to_proto()
    assert message.score == pytest.approx(quality.score)
    assert list(message.checks_failed) == list(quality.checks_failed)
    assert [a.check for a in message.anomalies] == [a.check for a in quality.anomalies]
    assert 0.0 < message.score < 1.0


@pytest.mark.parametrize("count", [20, 21, 119, 120])
def test_robust_zscore_equals_the_numpy_median_formula(count: int) -> None:
    rng = np.random.default_rng(count)
    for trial in range(200):
        history = rng.normal(0.0, 0.01, count)
        if trial % 5 == 0:
            history[: count - 3] = 0.0  # mostly flat: MAD 0, the mean deviation takes over
        value = float(rng.normal(0.0, 0.05))
        median = float(np.median(history))
        deviations = np.abs(history - median)
        sigma = 1.4826 * float(np.median(deviations))
        if sigma == 0.0:
            sigma = 1.2533 * float(deviations.mean())
        assert robust_zscore(list(history), value) == abs(value - median) / sigma


def test_recent_returns_ring_keeps_the_last_values_like_a_bounded_deque() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 0.01, 1000).tolist()
    ring = RecentReturns(120, values[:50])
    reference: deque[float] = deque(values[:50], maxlen=120)
    for value in values[50:]:
        ring.append(value)
        reference.append(value)
        assert ring.values.tolist() == list(reference)
    assert len(ring) == 120


def test_is_clean_bar_implies_no_per_bar_check_fires(make_random_walk: Walk) -> None:
    odd = (0.0, -1.0, math.nan, math.inf, 99.0, 101.0, 100.0)
    bars = [
        replace(base, open=o, high=h, low=lo, volume=v, duplicate_trades=d)
        for base in make_random_walk(4, 9)
        for o, h, lo in itertools.product(odd, repeat=3)
        for v in (0.0, 2.0, math.nan)
        for d in (0, 1)
    ]
    clean = [bar for bar in bars if is_clean(bar)]
    assert 0 < len(clean) < len(bars)
    for bar in clean:
        assert non_finite_anomaly(bar) is None
        assert non_positive_anomaly(bar) is None
        assert ohlc_anomaly(bar) is None
        assert trade_order_anomalies(bar) == []
    assert all(is_clean(bar) for bar in make_random_walk(200, 10))
