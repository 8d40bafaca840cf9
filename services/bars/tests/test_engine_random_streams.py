"""Random disordered streams against a naive per-trade reference: after every revision, the
latest final version of each bar equals the bar built from all trades at once."""

from __future__ import annotations

import numpy as np
import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND, TIMEFRAMES
from tickmesh.v1 import market_pb2

SECOND = NS_PER_SECOND
T0 = 1_700_000_000 * SECOND - (1_700_000_000 * SECOND) % TIMEFRAMES[-1].duration_ns
Trade = tuple[int, float, float, int]  # (trade id, price, quantity, event time ns)
Expected = dict[tuple[str, int], tuple[float, float, float, float, float, int]]


def random_trades(rng: np.random.Generator, size: int) -> list[Trade]:
    """A random walk with bursts and idle stretches of a few minutes (flat bars)."""
    gaps = rng.exponential(0.8 * SECOND, size)
    idle = rng.random(size) < 0.004
    gaps[idle] += rng.uniform(60, 400, int(idle.sum())) * SECOND
    times = T0 + 50 * NS_PER_MINUTE + np.cumsum(gaps).astype(np.int64)
    prices = np.round(100.0 + np.cumsum(rng.normal(0, 0.05, size)), 2)
    quantities = np.round(rng.uniform(0.001, 2.0, size), 3)
    return [
        (1000 + i, float(p), float(q), int(t))
        for i, (p, q, t) in enumerate(zip(prices, quantities, times, strict=True))
    ]


def reference_finals(trades: list[Trade], frontier_ns: int) -> Expected:
    """Final bars of every timeframe built trade by trade, flat bars at the previous close."""
    ordered = sorted(trades, key=lambda trade: (trade[3], trade[0]))
    expected: Expected = {}
    for tf in TIMEFRAMES:
        buckets: dict[int, list[Trade]] = {}
        for trade in ordered:
            buckets.setdefault(tf.bucket(trade[3]), []).append(trade)
        close = 0.0
        bucket = min(buckets)
        while bucket + tf.duration_ns <= frontier_ns:
            inside = buckets.get(bucket)
            if inside is None:
                expected[(tf.label, bucket)] = (close, close, close, close, 0.0, 0)
            else:
                prices = [trade[1] for trade in inside]
                close = prices[-1]
                volume = sum(trade[2] for trade in inside)
                expected[(tf.label, bucket)] = (
                    prices[0],
                    max(prices),
                    min(prices),
                    close,
                    volume,
                    len(inside),
                )
            bucket += tf.duration_ns
    return expected


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_late_and_duplicate_arrivals_converge_to_reference_bars(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trades = random_trades(rng, 2500)
    # Most trades arrive within the lateness; one in ten up to four minutes late; 5% twice.
    delays = np.where(
        rng.random(len(trades)) < 0.9,
        rng.uniform(0, 1.5, len(trades)),
        rng.uniform(3, 240, len(trades)),
    )
    arrivals = [
        (trade[3] + int(delay * SECOND), trade) for trade, delay in zip(trades, delays, strict=True)
    ]
    arrivals += [arrivals[i] for i in rng.choice(len(trades), len(trades) // 20, replace=False)]
    arrivals.sort(key=lambda arrival: arrival[0])

    engine = BarEngine()
    updates: list[BarUpdate] = []
    position = 0
    while position < len(arrivals):
        size = int(rng.integers(1, 40))
        chunk = arrivals[position : position + size]
        position += size
        ids, prices, quantities, times = zip(*(trade for _, trade in chunk), strict=True)
        run = TradeRun.from_columns(
            market_pb2.EXCHANGE_SIMULATOR, "SIM", ids, prices, quantities, times
        )
        # The wall clock reads the chunk's arrival time: idle minutes finalize, late trades revise.
        updates += engine.advance(chunk[-1][0])
        result = engine.apply_trades(run)
        assert result.quarantined == result.too_late == 0
        updates += result.updates
    end_clock = max(trade[3] for trade in trades) + 5 * NS_PER_MINUTE
    updates += engine.advance(end_clock)

    versions: dict[tuple[str, int], list[int]] = {}
    latest: dict[tuple[str, int], BarUpdate] = {}
    for update in updates:
        key = (update.timeframe.label, update.open_time_ns)
        versions.setdefault(key, []).append(update.revision)
        latest[key] = update
    assert all(revisions == list(range(len(revisions))) for revisions in versions.values())
    assert any(len(revisions) > 1 for revisions in versions.values())

    expected = reference_finals(trades, end_clock - engine.config.allowed_lateness_ns)
    assert latest.keys() == expected.keys()
    for key, (o, h, lo, c, volume, count) in expected.items():
        bar = latest[key]
        assert (bar.open, bar.high, bar.low, bar.close, bar.trade_count) == (o, h, lo, c, count)
        assert bar.volume == pytest.approx(volume, rel=1e-9, abs=1e-12)
