"""A restart does not count its downtime on a replayed symbol's clock.

A replayed symbol's clock runs on from its last event by the wall-clock time since; if the
time the bar service was down counted, the minute open at the crash would be final before
the collector resends its unacknowledged trades, and they would revise it.
"""

from __future__ import annotations

import json

from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_SECOND
from tickmesh.v2 import market_pb2

T0 = 1_680_652_800 * NS_PER_SECOND  # 2023-04-05 00:00 UTC: a replay, years behind the clock
WALL = 1_790_000_000 * NS_PER_SECOND


def _run(ids: list[int], seconds: list[float]) -> TradeRun:
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_SPOT,
        "ETHUSDT",
        ids,
        [100] * len(ids),
        [1] * len(ids),
        [T0 + int(s * NS_PER_SECOND) for s in seconds],
    )


def _restarted(down_for_ns: int, count_downtime: bool) -> BarEngine:
    engine = BarEngine()
    engine.advance(WALL)
    engine.apply_trades(_run([1, 2], [10.0, 55.0]))  # minute 0 open at 00:00:55
    saved = json.loads(json.dumps(engine.snapshot()))
    restarted = BarEngine()
    back = WALL + down_for_ns
    restarted.restore(saved, now_ns=None if count_downtime else back)
    restarted.advance(back)
    return restarted


def _final_minutes(engine: BarEngine, now_ns: int) -> list[int]:
    return [u.open_time_ns for u in engine.advance(now_ns) if u.final and u.timeframe.label == "1m"]


def test_downtime_does_not_finalize_the_open_minute_of_a_replay() -> None:
    down = 30 * NS_PER_SECOND
    restarted = _restarted(down, count_downtime=False)
    # The resent trade of minute 0 still lands in a forming bar: no revision.
    result = restarted.apply_trades(_run([3], [58.0]))
    assert [u.revision for u in result.updates if u.final] == []
    assert _final_minutes(restarted, WALL + down + NS_PER_SECOND) == []
    # The replay's clock goes on from the restart: 00:01:02 passes minute 0's end + lateness.
    assert _final_minutes(restarted, WALL + down + 8 * NS_PER_SECOND) == [T0]


def test_counting_the_downtime_would_have_finalized_it() -> None:
    restarted = _restarted(30 * NS_PER_SECOND, count_downtime=True)
    result = restarted.apply_trades(_run([3], [58.0]))
    revised = [u.revision for u in result.updates if u.final and u.timeframe.label == "1m"]
    assert revised == [1]
