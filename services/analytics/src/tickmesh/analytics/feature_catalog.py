"""The feature catalog: every feature's name, description, unit, group and version, for `tickmesh features`."""

from __future__ import annotations

from tickmesh.analytics.features import ALL_SPECS
from tickmesh.analytics.features.spec import FEATURE_VERSION, FeatureSpec

__all__ = ["FEATURE_VERSION", "FeatureSpec", "feature_catalog"]


def feature_catalog() -> list[FeatureSpec]:
    """Return the specification of every feature, in output order."""
    return list(ALL_SPECS)
