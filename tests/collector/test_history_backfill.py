"""Backfills of symbols that already trade later: the bar service's history lane and
analytics' history streams, through real processes.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from tickmesh.collector.history_import import (
    DayStatus,
    RangeRequest,
    import_range,
)
from tickmesh.collector.importer import import_files
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import (
    analytics_service_pb2,
    analytics_service_pb2_grpc,
    market_pb2,
)

from ..grpc_helpers import dial
from ..mesh_processes import ServiceProcess
from .harness import MINUTE_NS
from .range_helpers import (
    AUG_8,
    AUG_9,
    ETH_MINUTES,
    SPOT,
    eth_days,
    range_options,
    synthetic_day,
    until_analysed,
    until_capture_bars,
)
from .vision_server import (
    publish_day,
    spot_file,
    vision_server,
)


async def test_range_import_of_last_month_for_a_live_symbol_builds_history_exactly(
    bars: ServiceProcess, analytics: ServiceProcess, tmp_path: Path
) -> None:
    # ETHUSDT is live: trades of this very minute reach the bar service first.
    now_ms = time.time_ns() // 1_000_000
    live = tmp_path / "ETHUSDT-trades-live.csv"
    live_rows = [f"{9_000_000_000 + i},2500.00,0.1,250.0,{now_ms + i},false" for i in range(3)]
    live.write_text("\n".join(live_rows) + "\n")
    await import_files([live], bars.address, state_path=tmp_path / "live.json", show_progress=False)
    root = tmp_path / "vision"
    days = eth_days(root)
    with vision_server(root) as (base_url, _):
        result = await import_range(
            RangeRequest("spot", "ETHUSDT", AUG_8, AUG_9),
            bars.address,
            range_options(tmp_path, base_url),
        )
    assert [d.status for d in result] == [DayStatus.IMPORTED] * 2
    await until_capture_bars(bars.address, ETH_MINUTES)
    await until_analysed(analytics.address, SPOT, "ETHUSDT", set(ETH_MINUTES))
    total = sum(len(rows) for rows in days.values()) + len(live_rows)
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="too_late"') == 0
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == total


# 1440: the whole later day, more bars than analytics keeps; 100: a short stream that has
# dropped none (history bars precede all of it and must not rewind it either).
@pytest.mark.parametrize("later_minutes", [1440, 100])
async def test_history_import_after_later_days_leaves_the_later_indicators_alone(
    bars: ServiceProcess, analytics: ServiceProcess, tmp_path: Path, later_minutes: int
) -> None:
    root = tmp_path / "vision"
    eth_days(root)
    later, next_day = dt.date(2024, 8, 20), dt.date(2024, 8, 21)
    later_rows = synthetic_day(later, later_minutes, 5_000_000_000)
    next_rows = synthetic_day(next_day, 30, 6_000_000_000)
    later_end = int(later_rows[-1].split(",")[4]) * 1000 // MINUTE_NS * MINUTE_NS
    publish_day(root, spot_file("ETHUSDT", later), "\n".join(later_rows) + "\n")
    publish_day(root, spot_file("ETHUSDT", next_day), "\n".join(next_rows) + "\n")
    with vision_server(root) as (base_url, _):
        options = range_options(tmp_path, base_url)
        # All of Aug 20 first: more 1m bars than analytics keeps per stream.
        for start, end in ((later, later), (AUG_8, AUG_9), (next_day, next_day)):
            request = RangeRequest("spot", "ETHUSDT", start, end)
            days = await import_range(request, bars.address, options)
            assert [d.status for d in days] == [DayStatus.IMPORTED] * len(days)
            if start == later:
                # Analysed up to its last minute but one (the last waits for the clock) first.
                await until_analysed(analytics.address, SPOT, "ETHUSDT", {later_end - MINUTE_NS})
    await until_capture_bars(bars.address, ETH_MINUTES)
    await until_analysed(analytics.address, SPOT, "ETHUSDT", set(ETH_MINUTES))
    # The first minute of Aug 21 follows Aug 20's last minutes, not Aug 9's.
    first = int(dt.datetime(2024, 8, 21, tzinfo=dt.UTC).timestamp()) * 10**9
    await until_analysed(analytics.address, SPOT, "ETHUSDT", {first})
    # The 19 minutes before midnight: their own close, or the last close (a flat bar).
    last = later_minutes - 1
    closes = [float(later_rows[3 * min(m, last) + 2].split(",")[1]) for m in range(1421, 1440)]
    closes.append(float(next_rows[2].split(",")[1]))
    async with dial(analytics.address) as channel:
        response = await analytics_service_pb2_grpc.AnalyticsServiceStub(channel).GetIndicators(
            analytics_service_pb2.GetIndicatorsRequest(
                instrument=InstrumentId(SPOT, "ETHUSDT").to_proto(),
                timeframe=market_pb2.TIMEFRAME_1M,
                start_time_ns=first,
                end_time_ns=first + MINUTE_NS,
            )
        )
    assert response.rows[0].sma_20 == pytest.approx(sum(closes) / 20)
    # Aug 8 and 9 went to the bar service's history lane and analytics' history streams.
    assert await analytics.metric("tickmesh_analytics_warmups_total", 'reason="history"') >= 1
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="too_late"') == 0


async def test_history_lane_survives_a_bar_service_kill_mid_backfill(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    # ETHUSDT is live, so Aug 8 and 9 go to the history lane.
    now_ms = time.time_ns() // 1_000_000
    live = tmp_path / "ETHUSDT-trades-live.csv"
    live.write_text(f"9000000000,2500.00,0.1,250.0,{now_ms},false\n")
    await import_files([live], bars.address, state_path=tmp_path / "live.json", show_progress=False)
    root = tmp_path / "vision"
    days = eth_days(root)
    total = sum(len(rows) for rows in days.values())
    request = RangeRequest("spot", "ETHUSDT", AUG_8, AUG_9)
    with vision_server(root) as (base_url, _):
        cut = 4000
        first = await import_range(
            request, bars.address, range_options(tmp_path, base_url, max_trades=cut)
        )
        assert first[0].file is not None
        assert first[0].file.acknowledged == cut
        # SIGKILL: the lane's open minute holds acknowledged trades; its head must be durable.
        await bars.kill()
        await bars.start()
        second = await import_range(request, bars.address, range_options(tmp_path, base_url))
        assert second[0].file is not None
        assert second[0].file.skipped == cut
    await until_capture_bars(bars.address, ETH_MINUTES)
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == total - cut
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="too_late"') == 0
