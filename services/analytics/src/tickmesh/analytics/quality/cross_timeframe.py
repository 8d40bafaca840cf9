"""Cross-timeframe consistency: a higher-timeframe bar must equal its final 1m bars rolled up."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.quality.checks import CHECK_CROSS_TIMEFRAME
from tickmesh.analytics.results import Anomaly
from tickmesh.core.timeframes import NS_PER_MINUTE

# Prices are copied, not computed, by a roll-up; only the volume sum can differ by rounding.
_REL_TOLERANCE = 1e-9


def roll_up(
    minute_bars: Sequence[BarInput], open_time_ns: int, duration_ns: int
) -> BarInput | None:
    """Return the bar of [open_time_ns, +duration) built from its 1m bars; None if any is missing.

    Flats (zero-volume 1m bars, which repeat the previous close) are skipped: the open is the
    first traded bar's, the close the last one's, high/low/volume over traded bars only. A
    bucket of flats only rolls up to a flat at the first flat's price.
    """
    end = open_time_ns + duration_ns
    members = sorted(
        (bar for bar in minute_bars if open_time_ns <= bar.open_time_ns < end),
        key=lambda bar: bar.open_time_ns,
    )
    expected = duration_ns // NS_PER_MINUTE
    if len({bar.open_time_ns for bar in members}) != expected or len(members) != expected:
        return None
    traded = [bar for bar in members if not bar.is_flat]
    if not traded:
        first = members[0]
        return BarInput(open_time_ns, first.open, first.high, first.low, first.close, 0.0)
    return BarInput(
        open_time_ns=open_time_ns,
        open=traded[0].open,
        high=max(bar.high for bar in traded),
        low=min(bar.low for bar in traded),
        close=traded[-1].close,
        volume=math.fsum(bar.volume for bar in traded),
        quote_volume=math.fsum(bar.quote_volume for bar in traded),
        trade_count=sum(bar.trade_count for bar in traded),
    )


def cross_timeframe_anomaly(
    bar: BarInput, minute_bars: Sequence[BarInput], duration_ns: int
) -> tuple[bool, Anomaly | None]:
    """Compare `bar` with its 1m roll-up; return (compared, anomaly or None).

    `compared` is False when a 1m bar of the bucket is missing, so nothing can be said.
    """
    expected = roll_up(minute_bars, bar.open_time_ns, duration_ns)
    if expected is None:
        return False, None
    differences = [
        f"{name} {actual} != {wanted}"
        for name, actual, wanted in (
            ("open", bar.open, expected.open),
            ("high", bar.high, expected.high),
            ("low", bar.low, expected.low),
            ("close", bar.close, expected.close),
            ("volume", bar.volume, expected.volume),
        )
        if not math.isclose(actual, wanted, rel_tol=_REL_TOLERANCE, abs_tol=1e-12)
    ]
    if not differences:
        return True, None
    detail = "differs from its 1m roll-up: " + "; ".join(differences)
    return True, Anomaly(CHECK_CROSS_TIMEFRAME, bar.open_time_ns, detail)
