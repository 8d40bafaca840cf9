"""Calendar features: time of day, minute of hour and day of week as sin/cos pairs (UTC, bar open)."""

from __future__ import annotations

import math

from tickmesh.analytics.features.context import FeatureContext
from tickmesh.analytics.features.spec import FeatureSpec

GROUP = "calendar"
_NS_PER_SECOND = 1_000_000_000
_SECONDS_PER_DAY = 86_400
_TAU = 2.0 * math.pi
# 1970-01-01 was a Thursday; with Monday as day 0 it is day 3.
_EPOCH_WEEKDAY = 3

SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "time_of_day_sin", "Sine of the UTC time of day of the bar open.", "unit", GROUP, 1
    ),
    FeatureSpec(
        "time_of_day_cos", "Cosine of the UTC time of day of the bar open.", "unit", GROUP, 1
    ),
    FeatureSpec(
        "minute_of_hour_sin",
        "Sine of the minute within the hour of the bar open.",
        "unit",
        GROUP,
        1,
    ),
    FeatureSpec(
        "minute_of_hour_cos",
        "Cosine of the minute within the hour of the bar open.",
        "unit",
        GROUP,
        1,
    ),
    FeatureSpec(
        "day_of_week_sin", "Sine of the UTC weekday (Monday 0) of the bar open.", "unit", GROUP, 1
    ),
    FeatureSpec(
        "day_of_week_cos", "Cosine of the UTC weekday (Monday 0) of the bar open.", "unit", GROUP, 1
    ),
)


def compute(ctx: FeatureContext, out: dict[str, float]) -> None:
    """Add the calendar features of the bar's open time to `out`."""
    seconds = ctx.open_time_ns // _NS_PER_SECOND
    days, second_of_day = divmod(seconds, _SECONDS_PER_DAY)
    day_angle = _TAU * second_of_day / _SECONDS_PER_DAY
    hour_angle = _TAU * (second_of_day % 3600) / 3600.0
    week_angle = _TAU * ((days + _EPOCH_WEEKDAY) % 7) / 7.0
    out["time_of_day_sin"] = math.sin(day_angle)
    out["time_of_day_cos"] = math.cos(day_angle)
    out["minute_of_hour_sin"] = math.sin(hour_angle)
    out["minute_of_hour_cos"] = math.cos(hour_angle)
    out["day_of_week_sin"] = math.sin(week_angle)
    out["day_of_week_cos"] = math.cos(week_angle)
