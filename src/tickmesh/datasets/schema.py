"""The dataset's Arrow schema: bar columns, `ind_*` indicator columns, `feat_*` feature columns.

Prices and volumes are exact: `decimal128(38, 18)`, the scale the mesh's decimals never exceed
(core.decimals.MAX_SCALE); a value with more decimals is refused, never rounded.
Indicators and features are statistics and stay float64, null where there is no value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.datasets.request import DatasetRequest

EXACT = pa.decimal128(38, 18)
TIME = pa.timestamp("us", tz="UTC")
INDICATOR_PREFIX = "ind_"
FEATURE_PREFIX = "feat_"

# Feature names become SQL identifiers and column names: only plain snake_case is accepted.
_FEATURE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

# (column, Arrow type) of the bar part; `instrument` and `timeframe` are constant per chunk
# and added by the reader, the rest comes from the query in this order.
KEY_FIELDS: tuple[pa.Field[Any], ...] = (
    pa.field("instrument", pa.string(), nullable=False),
    pa.field("timeframe", pa.string(), nullable=False),
)
BAR_FIELDS: tuple[pa.Field[Any], ...] = (
    pa.field("time", TIME, nullable=False),
    pa.field("open", EXACT, nullable=False),
    pa.field("high", EXACT, nullable=False),
    pa.field("low", EXACT, nullable=False),
    pa.field("close", EXACT, nullable=False),
    pa.field("volume", EXACT, nullable=False),
    pa.field("quote_volume", EXACT, nullable=False),
    pa.field("taker_buy_volume", EXACT),
    pa.field("taker_buy_quote_volume", EXACT),
    pa.field("trade_count", pa.int64(), nullable=False),
    pa.field("vwap", pa.float64(), nullable=False),
    pa.field("revision", pa.int32(), nullable=False),
)
# As first final only: when each part became known (its commit time).
AS_OF_BAR_FIELDS: tuple[pa.Field[Any], ...] = (pa.field("committed_at", TIME, nullable=False),)


def check_feature_name(name: str) -> str:
    """Return `name` if it is a plain snake_case feature name; ValueError otherwise."""
    if _FEATURE_NAME.match(name) is None:
        raise ValueError(f"feature name {name!r} is not plain snake_case")
    return name


@dataclass(frozen=True, slots=True)
class DatasetSchema:
    """The columns of one dataset: which parts it has and which feature names."""

    as_of: bool
    indicators: bool
    features: tuple[str, ...] | None

    @classmethod
    def of(cls, request: DatasetRequest, feature_names: Sequence[str]) -> DatasetSchema:
        """The schema of `request` with the given feature columns (ignored without features)."""
        names = tuple(check_feature_name(n) for n in feature_names) if request.features else None
        return cls(as_of=request.as_of, indicators=request.indicators, features=names)

    def bar_fields(self) -> list[pa.Field[Any]]:
        """The bar columns the SQL returns (read as CSV: exact decimals parse as they are)."""
        return [*BAR_FIELDS, *(AS_OF_BAR_FIELDS if self.as_of else ())]

    def indicator_fields(self) -> list[pa.Field[Any]]:
        """The indicator columns, and as first final when they were stored (fixed-width binary)."""
        if not self.indicators:
            return []
        fields: list[pa.Field[Any]] = [
            pa.field(INDICATOR_PREFIX + n, pa.float64()) for n in INDICATOR_NAMES
        ]
        if self.as_of:
            fields.append(pa.field("indicators_committed_at", TIME))
        return fields

    def feature_row_fields(self) -> list[pa.Field[Any]]:
        """The feature rows' version, and as first final when they were stored."""
        if self.features is None:
            return []
        fields: list[pa.Field[Any]] = [pa.field("feature_version", pa.string())]
        if self.as_of:
            fields.append(pa.field("features_committed_at", TIME))
        return fields

    def analytics_fields(self) -> list[pa.Field[Any]]:
        """The indicator columns, then the feature rows' version and time."""
        return [*self.indicator_fields(), *self.feature_row_fields()]

    def feature_fields(self) -> list[pa.Field[Any]]:
        """One float64 column per feature (read from the feature rows' JSON)."""
        return [pa.field(FEATURE_PREFIX + n, pa.float64()) for n in self.features or ()]

    def query_fields(self) -> list[pa.Field[Any]]:
        """Every column but the key columns, in order."""
        return [*self.bar_fields(), *self.analytics_fields(), *self.feature_fields()]

    def arrow(self) -> pa.Schema:
        """The Arrow schema of every batch, with the mode in its metadata."""
        metadata: dict[bytes | str, bytes | str] = {
            b"tickmesh.mode": b"as_of_first_final" if self.as_of else b"latest",
            b"tickmesh.schema": b"1",
        }
        return pa.schema([*KEY_FIELDS, *self.query_fields()], metadata=metadata)
