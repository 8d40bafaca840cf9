"""BarWindow keeps the newest `capacity` bars, with their terms, as its storage grows and compacts."""

from __future__ import annotations

import numpy as np

from tickmesh.analytics.bar_terms import bar_terms
from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.bars_window import BarWindow

MINUTE_NS = 60_000_000_000


def walk(count: int) -> list[BarInput]:
    """`count` one-minute bars of a seeded random walk."""
    rng = np.random.default_rng(7)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, count)))
    return [
        BarInput(
            i * MINUTE_NS,
            c * 0.999,
            c * 1.002,
            c * 0.997,
            c,
            1.0 + i % 5,
            c,
            3,
            taker_buy_volume=0.5,
        )
        for i, c in enumerate(closes.tolist())
    ]


def expected_terms(bars: list[BarInput], first: int, last: int) -> np.ndarray:
    """The terms of bars[first:last], each from its own bar and the close before it."""
    rows = []
    for i in range(first, last):
        bar, previous = bars[i], bars[i - 1].close if i else None
        rows.append(bar_terms(bar.open, bar.high, bar.low, bar.close, bar.volume, 0.5, previous))
    return np.array(rows)


def test_window_keeps_the_newest_bars_through_growth_and_compaction() -> None:
    bars = walk(1_000)
    window = BarWindow(320)
    for count, bar in enumerate(bars, start=1):
        window.append(bar)
        first = max(0, count - 320)
        assert len(window) == count - first
        if count in (1, 16, 17, 33, 320, 321, 640, 641, 1_000):
            np.testing.assert_array_equal(
                window.open_time, [b.open_time_ns for b in bars[first:count]]
            )
            np.testing.assert_array_equal(window.close, [b.close for b in bars[first:count]])
            np.testing.assert_array_equal(window.terms, expected_terms(bars, first, count))
    assert window.bar(0) == bars[680]


def test_truncate_then_append_in_a_growing_window() -> None:
    bars = walk(40)
    window = BarWindow(320)
    for bar in bars[:20]:
        window.append(bar)
    removed = window.truncate(12)
    assert [b.open_time_ns for b in removed] == [b.open_time_ns for b in bars[12:20]]
    for bar in bars[12:]:
        window.append(bar)
    np.testing.assert_array_equal(window.open_time, [b.open_time_ns for b in bars])
    np.testing.assert_array_equal(window.terms, expected_terms(bars, 0, 40))
