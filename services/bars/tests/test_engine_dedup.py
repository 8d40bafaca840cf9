"""The applied-trade-id interval set, and duplicate handling inside and across runs."""

from __future__ import annotations

import numpy as np

from tickmesh.bars.dedup import TradeIdSet
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_SECOND
from tickmesh.v2 import market_pb2


def ids(*values: int) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """Return sorted unique ids as an int64 array."""
    return np.array(sorted(set(values)), dtype=np.int64)


def test_id_set_contiguous_adds_keep_one_interval() -> None:
    applied = TradeIdSet()
    for start in range(100, 1100, 100):
        applied.add(np.arange(start, start + 100, dtype=np.int64))
    assert applied.intervals == [(100, 1099)]


def test_id_set_gaps_filled_later_merge_intervals() -> None:
    applied = TradeIdSet()
    applied.add(ids(1, 2, 3, 7, 8, 20))
    assert applied.intervals == [(1, 3), (7, 8), (20, 20)]
    applied.add(ids(4, 5, 6, 9, 19))
    assert applied.intervals == [(1, 9), (19, 20)]
    assert applied.contains(ids(0, 1, 9, 10, 18, 19, 20, 21)).tolist() == [
        False,
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]


def test_id_set_ids_below_every_interval_are_new() -> None:
    applied = TradeIdSet()
    applied.add(ids(50, 51))
    applied.add(ids(10, 11))
    assert applied.intervals == [(10, 11), (50, 51)]
    assert not applied.all_new(ids(40, 60))
    assert applied.all_new(ids(52))


def test_id_set_over_bound_coalesces_oldest_gaps() -> None:
    applied = TradeIdSet(max_intervals=3)
    applied.add(ids(1, 3, 5, 7, 9))
    assert applied.intervals == [(1, 5), (7, 7), (9, 9)]
    assert applied.coalesced_gaps == 2
    assert applied.contains(ids(2, 4, 6, 8)).tolist() == [True, True, False, False]


def test_id_set_round_trips_through_dict() -> None:
    applied = TradeIdSet(max_intervals=8)
    applied.add(ids(1, 2, 5))
    restored = TradeIdSet.from_dict(applied.to_dict(), max_intervals=8)
    assert restored.intervals == applied.intervals
    restored.add(ids(3, 4))
    assert restored.intervals == [(1, 5)]


def test_run_with_repeated_ids_counts_duplicates_once_applied() -> None:
    t = 1_700_000_000 * NS_PER_SECOND
    run = TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_SPOT,
        "ETHUSDT",
        [5, 3, 5, 4, 3],
        [10, 11, 10, 12, 11],
        [1, 1, 1, 1, 1],
        [t + 3, t + 1, t + 3, t + 2, t + 1],
    )
    engine = BarEngine()
    result = engine.apply_trades(run)
    assert (result.accepted, result.duplicates) == (3, 2)
    (forming,) = [u for u in engine.take_forming_updates() if u.timeframe.label == "1m"]
    assert (forming.open, forming.close, forming.trade_count) == (11.0, 10.0, 3)
    again = engine.apply_trades(run)
    assert (again.accepted, again.duplicates) == (0, 5)


def test_same_ids_on_other_symbol_are_not_duplicates() -> None:
    t = 1_700_000_000 * NS_PER_SECOND
    engine = BarEngine()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        run = TradeRun.from_columns(
            market_pb2.EXCHANGE_BINANCE_SPOT, symbol, [1, 2], [1, 2], [1, 1], [t, t + 1]
        )
        assert engine.apply_trades(run).accepted == 2
