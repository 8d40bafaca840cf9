"""Data quality per instrument and timeframe: per-bar checks, cross-timeframe roll-ups and a 0-1 score."""

from __future__ import annotations

from tickmesh.analytics.quality.checks import (
    CHECK_CROSS_TIMEFRAME,
    CHECK_DUPLICATES,
    CHECK_GAPS,
    CHECK_NON_FINITE,
    CHECK_NON_POSITIVE,
    CHECK_OHLC,
    CHECK_OUT_OF_ORDER,
    CHECK_SPIKES,
    CHECK_STALE,
)
from tickmesh.analytics.quality.cross_timeframe import cross_timeframe_anomaly, roll_up
from tickmesh.analytics.quality.monitor import QualityConfig, QualityMonitor, judge_staleness

__all__ = [
    "CHECK_CROSS_TIMEFRAME",
    "CHECK_DUPLICATES",
    "CHECK_GAPS",
    "CHECK_NON_FINITE",
    "CHECK_NON_POSITIVE",
    "CHECK_OHLC",
    "CHECK_OUT_OF_ORDER",
    "CHECK_SPIKES",
    "CHECK_STALE",
    "QualityConfig",
    "QualityMonitor",
    "cross_timeframe_anomaly",
    "judge_staleness",
    "roll_up",
]
