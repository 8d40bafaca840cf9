"""The batch-wide path for simple runs builds exactly what the per-run path builds.

The per-run path (`BarEngine.apply_trades`) is the one checked against Binance's klines; here
two engines take the same random batches, one run by run and one through `apply_runs`, with
every rare fate mixed in (duplicates, out-of-order trades, several minutes, quarantine,
non-market trades, too late, in the future, a finer scale, an instrument twice in a batch),
and must agree on every fate, every bar update and their whole state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tickmesh.bars.config import EngineConfig
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.results import TradeRunResult
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE
from tickmesh.v2 import market_pb2

NS_PER_SECOND = 1_000_000_000
START_NS = 1_722_000_000 * NS_PER_SECOND  # 2024-07-26, a minute boundary
INSTRUMENTS: list[tuple[int, str]] = [
    (
        market_pb2.EXCHANGE_BINANCE_SPOT if i % 2 == 0 else market_pb2.EXCHANGE_BINANCE_USDM,
        f"S{i}USDT",
    )
    for i in range(12)
]


def _fates(result: TradeRunResult) -> tuple[Any, ...]:
    return (
        result.exchange,
        result.symbol,
        result.updates,
        result.accepted,
        result.duplicates,
        result.non_market,
        result.too_late,
        result.quarantined,
        result.counted_duplicates,
    )


class _Market:
    """Random runs around a virtual clock, with every rare case at a few per cent."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.clock_ns = START_NS
        self.step_ns = NS_PER_SECOND
        self.next_id = {key: 1 for key in INSTRUMENTS}

    def run(self, key: tuple[int, str]) -> TradeRun:
        rng = self.rng
        size = int(rng.integers(0, 6)) if rng.random() < 0.05 else int(rng.integers(1, 6))
        first = self.next_id[key]
        ids = np.arange(first, first + size, dtype=np.int64) + np.cumsum(rng.random(size) < 0.1)
        self.next_id[key] = int(ids[-1]) + 1 if size else first
        times = np.sort(self.clock_ns - rng.integers(0, self.step_ns, size))
        prices = rng.integers(9_990, 10_010, size)
        quantities = rng.integers(1, 50, size)
        price_scale = 2
        case = rng.random()
        if case < 0.05 and first > 10:  # a resend of ids already applied
            ids = ids - int(rng.integers(1, 8))
        elif case < 0.10:  # arrived out of order
            times = rng.permutation(times)
        elif case < 0.15:  # spans minutes
            times = np.sort(self.clock_ns - rng.integers(0, 150 * NS_PER_SECOND, size))
        elif case < 0.18 and size:  # a price of zero or a negative quantity
            prices[0] = 0
            quantities[-1] = -quantities[-1]
        elif case < 0.20:  # older than the retained window
            times = times - 6 * NS_PER_MINUTE
        elif case < 0.22:  # in the future
            times = times + 3 * NS_PER_MINUTE
        elif case < 0.24 and key == INSTRUMENTS[0]:  # a finer price scale, from then on
            prices, price_scale = prices * 10 + 3, 3
        elif case < 0.26:  # ids descending
            ids = ids[::-1].copy()
        types = None
        if rng.random() < 0.04:
            types = rng.choice(
                [market_pb2.TRADE_TYPE_MARKET, market_pb2.TRADE_TYPE_ADL], size, p=[0.7, 0.3]
            )
        counts = rng.integers(1, 4, size) if rng.random() < 0.1 else None
        sides = None if rng.random() < 0.2 else rng.integers(1, 3, size)
        return TradeRun.from_columns(
            key[0],
            key[1],
            ids,
            prices,
            quantities,
            times,
            types,
            counts,
            sides=sides,
            price_scale=price_scale,
            quantity_scale=3,
        )

    def batch(self) -> list[TradeRun]:
        self.step_ns = int(self.rng.integers(1, 4)) * NS_PER_SECOND
        self.clock_ns += self.step_ns
        count = int(self.rng.integers(1, len(INSTRUMENTS)))
        keys = [INSTRUMENTS[i] for i in self.rng.choice(len(INSTRUMENTS), count, replace=False)]
        if self.rng.random() < 0.1:
            keys.append(keys[0])  # an instrument twice in one batch
        return [self.run(key) for key in keys]


def test_batches_through_apply_runs_equal_run_by_run() -> None:
    config = EngineConfig(retention_ns=5 * NS_PER_MINUTE)
    by_run, by_batch = BarEngine(config), BarEngine(config)
    market = _Market(seed=11)
    simple = total = 0
    for _ in range(600):
        runs = market.batch()
        now = market.clock_ns + NS_PER_SECOND
        assert by_run.advance(now) == by_batch.advance(now)
        expected = [_fates(by_run.apply_trades(run)) for run in runs]
        # As the ingest pipeline does: the simple runs at once, then every other one by itself.
        batch_results = by_batch.apply_simple_runs(runs)
        simple += sum(result is not None for result in batch_results)
        total += len(runs)
        got = [
            by_batch.apply_trades(run) if result is None else result
            for run, result in zip(runs, batch_results, strict=True)
        ]
        assert [_fates(result) for result in got] == expected
        assert by_run.take_forming_updates() == by_batch.take_forming_updates()
        assert by_run.snapshot_changes() == by_batch.snapshot_changes()
    assert by_run.snapshot() == by_batch.snapshot()
    assert simple > total // 2  # the batch path did most of the work


def test_plain_runs_take_the_batch_path_and_rare_ones_the_per_run_path() -> None:
    engine = BarEngine()
    engine.advance(START_NS + 30 * NS_PER_SECOND)

    def run(symbol: str, ids: list[int], seconds: list[int]) -> TradeRun:
        return TradeRun.from_columns(
            market_pb2.EXCHANGE_BINANCE_SPOT,
            symbol,
            ids,
            [100] * len(ids),
            [1] * len(ids),
            [START_NS + s * NS_PER_SECOND for s in seconds],
        )

    engine.apply_runs([run("AUSDT", [1], [1]), run("BUSDT", [1], [1]), run("CUSDT", [1], [1])])
    results = engine.apply_simple_runs(
        [
            run("AUSDT", [2, 3], [2, 3]),  # plain
            run("BUSDT", [1, 2], [2, 3]),  # id 1 again: a duplicate
            run("CUSDT", [2, 3], [3, 2]),  # out of order
            run("DUSDT", [1], [4]),  # never seen: the per-run path sets its scales
        ]
    )
    assert [result is not None for result in results] == [True, False, False, False]
    assert results[0] is not None
    assert results[0].accepted == 2


def test_a_run_whose_sums_overflow_int64_stays_exact() -> None:
    by_run, by_batch = BarEngine(), BarEngine()
    clock = START_NS + 30 * NS_PER_SECOND

    def run(first_id: int, price: int, quantity: int) -> TradeRun:
        return TradeRun.from_columns(
            market_pb2.EXCHANGE_BINANCE_SPOT,
            "BIGUSDT",
            range(first_id, first_id + 4),
            [price] * 4,
            [quantity] * 4,
            [START_NS + s * NS_PER_SECOND for s in range(first_id, first_id + 4)],
        )

    for engine in (by_run, by_batch):
        engine.advance(clock)
    # 10**12 * 10**8 * 4 is above 2**63: the run takes the exact Python-int path.
    for runs in ([run(1, 5, 1)], [run(5, 10**12, 10**8)]):
        expected = [_fates(by_run.apply_trades(r)) for r in runs]
        assert [_fates(r) for r in by_batch.apply_runs(runs)] == expected
    forming = by_batch.take_forming_updates()
    assert forming == by_run.take_forming_updates()
    assert forming[0].quote_volume == 4 * 5 + 4 * 10**20
