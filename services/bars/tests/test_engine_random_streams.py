"""Random disordered streams against a naive per-trade reference: after every revision, the
latest final version of each bar equals the bar built from all trades at once, exactly (every
value an integer mantissa: prices at scale 2, quantities at scale 3)."""

from __future__ import annotations

import numpy as np
import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND, TIMEFRAMES
from tickmesh.v2 import market_pb2

SECOND = NS_PER_SECOND
T0 = 1_700_000_000 * SECOND - (1_700_000_000 * SECOND) % TIMEFRAMES[-1].duration_ns
# (trade id, price mantissa, quantity mantissa, event time ns, aggressor side)
Trade = tuple[int, int, int, int, int]
# (open, high, low, close, volume, quote volume, count, taker-buy volume, taker-buy quote volume)
Expected = dict[tuple[str, int], tuple[int, ...]]
BUY = market_pb2.AGGRESSOR_SIDE_BUY


def random_trades(rng: np.random.Generator, size: int) -> list[Trade]:
    """A random walk with bursts and idle stretches of a few minutes (flat bars)."""
    gaps = rng.exponential(0.8 * SECOND, size)
    idle = rng.random(size) < 0.004
    gaps[idle] += rng.uniform(60, 400, int(idle.sum())) * SECOND
    times = T0 + 50 * NS_PER_MINUTE + np.cumsum(gaps).astype(np.int64)
    prices = np.round(10_000 + np.cumsum(rng.normal(0, 5, size))).astype(np.int64)
    quantities = rng.integers(1, 2000, size)
    sides = rng.integers(1, 3, size)
    return [
        (1000 + i, int(p), int(q), int(t), int(side))
        for i, (p, q, t, side) in enumerate(zip(prices, quantities, times, sides, strict=True))
    ]


def reference_finals(trades: list[Trade], frontier_ns: int) -> Expected:
    """Final bars of every timeframe built trade by trade, flat bars at the previous close."""
    ordered = sorted(trades, key=lambda trade: (trade[3], trade[0]))
    expected: Expected = {}
    for tf in TIMEFRAMES:
        buckets: dict[int, list[Trade]] = {}
        for trade in ordered:
            buckets.setdefault(tf.bucket(trade[3]), []).append(trade)
        close = 0
        bucket = min(buckets)
        while bucket + tf.duration_ns <= frontier_ns:
            inside = buckets.get(bucket)
            if inside is None:
                expected[(tf.label, bucket)] = (close, close, close, close, 0, 0, 0, 0, 0)
            else:
                prices = [trade[1] for trade in inside]
                close = prices[-1]
                buys = [trade for trade in inside if trade[4] == BUY]
                expected[(tf.label, bucket)] = (
                    prices[0],
                    max(prices),
                    min(prices),
                    close,
                    sum(trade[2] for trade in inside),
                    sum(trade[1] * trade[2] for trade in inside),
                    len(inside),
                    sum(trade[2] for trade in buys),
                    sum(trade[1] * trade[2] for trade in buys),
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
        ids, prices, quantities, times, sides = zip(*(trade for _, trade in chunk), strict=True)
        run = TradeRun.from_columns(
            market_pb2.EXCHANGE_SIMULATOR, "SIM", ids, prices, quantities, times,
            sides=sides, price_scale=2, quantity_scale=3,
        )  # fmt: skip
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
    for key, values in expected.items():
        bar = latest[key]
        assert (bar.price_scale, bar.quantity_scale) == (2, 3)
        assert (
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            bar.quote_volume,
            bar.trade_count,
            bar.taker_buy_volume,
            bar.taker_buy_quote_volume,
        ) == values, key
