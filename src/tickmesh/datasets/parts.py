"""A chunk's parts (bars, indicators, feature rows) from COPY bytes to Arrow columns, lined
up by open time.

The parts are read from their own tables (sql.py), so an indicator or feature row may be
missing for a bar: `align` gives such a bar nulls, and leaves out rows of no bar.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from tickmesh.datasets import binary, packed_features
from tickmesh.datasets.schema import TIME, DatasetSchema

Column: TypeAlias = "pa.Array[Any] | pa.ChunkedArray[Any]"
Times: TypeAlias = "np.ndarray[Any, np.dtype[np.int64]]"
# pyarrow parses a chunk's CSV in blocks of this size, on its own threads.
_BLOCK_BYTES = 8 << 20
_OPEN_TIME = pa.field("time", TIME, nullable=False)


def epoch_us(column: Column) -> Times:
    """Microseconds since the epoch of a timestamp column, as numpy."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    values: Times = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return values


def align(bar_times: Times, times: Times, columns: Sequence[Column]) -> list[Column]:
    """`columns`, whose rows have the ascending unique open times `times`, one row per bar of
    `bar_times`: null where a bar has no row."""
    if np.array_equal(bar_times, times):
        return list(columns)  # the usual case: every bar has its row
    at = np.searchsorted(times, bar_times)
    inside = at < len(times)
    found = np.zeros(len(bar_times), dtype=bool)
    found[inside] = times[at[inside]] == bar_times[inside]
    indices = pa.array(np.where(found, at, 0), type=pa.int64(), mask=~found)
    return [column.take(indices) for column in columns]


class PartParser:
    """Parses one dataset's COPY output: bars as CSV, indicator and feature rows as binary."""

    def __init__(
        self, schema: DatasetSchema, feature_layouts: Mapping[int, Sequence[str]] | None = None
    ) -> None:
        """The parse options of `schema`'s columns, made once for every chunk; the names of
        each feature layout id (`feature_layouts`) for a schema with features."""
        self.schema = schema
        self._layouts = feature_layouts or {}
        bar_fields = schema.bar_fields()
        self._read = pa_csv.ReadOptions(
            column_names=[f.name for f in bar_fields], block_size=_BLOCK_BYTES
        )
        self._convert = pa_csv.ConvertOptions(column_types={f.name: f.type for f in bar_fields})
        self._indicator_fields = [_OPEN_TIME, *schema.indicator_fields()]
        self._feature_fields = [_OPEN_TIME, *schema.feature_row_fields()]

    def bars(self, text: bytes) -> list[Column]:
        """The bar columns of a CSV COPY (pa.ArrowInvalid for a value decimal128 cannot hold)."""
        if not text:
            return [pa.array([], type=f.type) for f in self.schema.bar_fields()]
        table = pa_csv.read_csv(
            io.BytesIO(text), read_options=self._read, convert_options=self._convert
        )
        return list(table.columns)

    def indicators(self, data: bytes) -> tuple[Times, list[Column]]:
        """The open times and indicator columns of a binary COPY of sql.indicators_query."""
        time, *columns = binary.to_arrow(data, self._indicator_fields)
        return epoch_us(time), list[Column](columns)

    def features(self, data: bytes) -> tuple[Times, list[Column]]:
        """The open times, then the feature rows' version (and time) and feature columns, of a
        binary COPY of sql.features_query."""
        names = self.schema.features or ()
        time, *columns = packed_features.feature_columns(
            data, self._feature_fields, names, self._layouts
        )
        return epoch_us(time), list[Column](columns)
