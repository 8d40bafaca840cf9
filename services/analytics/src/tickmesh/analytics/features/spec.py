"""FeatureSpec: the documented identity of one ML feature."""

from __future__ import annotations

from dataclasses import dataclass

# Bump when any feature's definition, name or unit changes; stored with every feature row.
FEATURE_VERSION = "1.1.0"  # 1.1.0: taker-buy ratios (bars of tickmesh.v2)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: stable snake_case name, one-line description, unit, group and history needed."""

    name: str
    description: str
    unit: str
    group: str
    min_bars: int
    version: str = FEATURE_VERSION
