"""The symbol clock: trades replayed from the past against today's wall clock."""

from __future__ import annotations

import numpy as np

from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND

MINUTE = NS_PER_MINUTE
TODAY_NS = 1_795_000_000 * NS_PER_SECOND  # 2026-11: years after every capture


def test_replay_far_behind_wall_clock_is_never_too_late(
    btc_2023_trades: TradeRun,
) -> None:
    engine = BarEngine()
    engine.advance(TODAY_NS)
    updates = []
    for start in range(0, len(btc_2023_trades), 500):
        part = btc_2023_trades.take(np.arange(start, min(start + 500, len(btc_2023_trades))))
        result = engine.apply_trades(part)
        assert result.too_late == 0
        updates += result.updates
        # The service ticks the wall clock between batches; a replay must not be overtaken.
        updates += engine.advance(TODAY_NS + start * 1000)
    minutes = {u.open_time_ns for u in updates if u.final and u.timeframe.label == "1m"}
    last_trade = int(btc_2023_trades.event_time_ns.max())
    last_minute = last_trade - last_trade % MINUTE
    assert last_minute not in minutes  # still forming: the replay's clock is its own
    assert len(minutes) == (last_minute - min(minutes)) // MINUTE


def test_replay_gone_quiet_finalizes_last_minute_by_elapsed_wall_time(
    btc_2023_trades: TradeRun,
) -> None:
    engine = BarEngine()
    engine.advance(TODAY_NS)
    engine.apply_trades(btc_2023_trades)
    last_trade = int(btc_2023_trades.event_time_ns.max())
    last_minute = last_trade - last_trade % MINUTE
    later = engine.advance(TODAY_NS + 2 * MINUTE)
    finals = [u for u in later if u.final and u.timeframe.label == "1m"]
    assert finals[0].open_time_ns == last_minute
    # Two minutes of quiet add at most two flat minutes, never years of them.
    assert len(finals) <= 3
