"""ML features of one bar, computed with numpy over the bar window; see feature_catalog for the list."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from tickmesh.analytics.bars_window import BarWindow
from tickmesh.analytics.features import calendar, candles, derived, returns, volatility, volume
from tickmesh.analytics.features.context import FeatureContext, build_context
from tickmesh.analytics.features.spec import FEATURE_VERSION, FeatureSpec
from tickmesh.analytics.results import Features, Indicators

__all__ = ["FEATURE_VERSION", "FeatureSpec", "compute_features", "feature_values"]

_GROUPS: tuple[
    tuple[tuple[FeatureSpec, ...], Callable[[FeatureContext, dict[str, float]], None]], ...
] = (
    (returns.SPECS, returns.compute),
    (volatility.SPECS, volatility.compute),
    (candles.SPECS, candles.compute),
    (volume.SPECS, volume.compute),
    (derived.SPECS, derived.compute),
    (calendar.SPECS, calendar.compute),
)

ALL_SPECS: tuple[FeatureSpec, ...] = tuple(spec for specs, _ in _GROUPS for spec in specs)


def feature_values(
    window: BarWindow, indicators: Indicators, previous: Indicators | None
) -> dict[str, float]:
    """Return the features of the newest bar in `window`; undefined or too-early ones are absent."""
    out: dict[str, float] = {}
    # Zero or negative prices make logs and ratios inf/NaN; those features are dropped below.
    with np.errstate(all="ignore"):
        context = build_context(window, indicators, previous)
        for _, compute in _GROUPS:
            compute(context, out)
    # A finite total means every value is finite (one NaN or inf would make it NaN or inf).
    if math.isfinite(sum(out.values())):
        return out
    return {name: value for name, value in out.items() if math.isfinite(value)}


def compute_features(
    window: BarWindow, indicators: Indicators, previous: Indicators | None
) -> Features:
    """Return the Features message of the newest bar in `window` (the bar `indicators` belong to)."""
    return Features(
        instrument=indicators.instrument,
        timeframe=indicators.timeframe,
        open_time_ns=indicators.open_time_ns,
        feature_version=FEATURE_VERSION,
        values=feature_values(window, indicators, previous),
    )
