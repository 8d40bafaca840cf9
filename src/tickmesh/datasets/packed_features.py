"""Feature rows from a binary COPY of sql.features_query: fixed-width fields, a layout id, and
the values packed as big-endian float8 (migration 0012), split into one column per feature.

A row's values are in the order of its layout's names (`feature_layouts`), so rows of one
layout are one numpy matrix, and a feature column is a column of it. Every row of a feature
version has the same layout, so a chunk is almost always a single matrix with one width: the
whole COPY then reads as one record array. Rows of different widths (a chunk that spans a
change of feature version, or rows packed from JSON that lacked some names) are split by a
walk over the rows, which costs a microsecond a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tickmesh.datasets import binary

_LENGTH = np.dtype(">i4")
_VALUE = np.dtype(">f8")


def _tail_groups(
    body: memoryview, head: np.dtype[Any]
) -> tuple[np.ndarray[Any, Any], list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]]:
    """The rows' fixed heads as one record array, and their packed values as (row indices,
    matrix) per width. A row is `head` (field count and fixed fields), the layout id, then
    the values' length and bytes."""
    prefix = np.dtype([*head.descr, ("layout_length", ">i4"), ("layout", ">i4")])
    if not len(body):
        return np.zeros(0, dtype=prefix), []
    first = int(np.frombuffer(body, dtype=_LENGTH, count=1, offset=prefix.itemsize)[0])
    if first >= 0 and first % _VALUE.itemsize == 0:
        record = np.dtype(
            [*prefix.descr, ("values_length", ">i4"), ("values", _VALUE, (first // 8,))]
        )
        if len(body) % record.itemsize == 0:
            rows = np.frombuffer(body, dtype=record)
            if (rows["values_length"] == first).all():
                heads = rows[list(prefix.names or ())]
                return heads, [(np.arange(len(rows)), rows["values"])]
    return _walk(body, prefix)


def _walk(
    body: memoryview, prefix: np.dtype[Any]
) -> tuple[np.ndarray[Any, Any], list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]]:
    heads = bytearray()
    by_width: dict[int, tuple[list[int], bytearray]] = {}
    position = 0
    row = 0
    while position < len(body):
        heads += body[position : position + prefix.itemsize]
        position += prefix.itemsize
        length = int.from_bytes(body[position : position + 4], "big", signed=True)
        position += 4
        if length < 0 or length % _VALUE.itemsize:
            raise binary.BinaryLayoutError("packed feature values are NULL or not float8")
        indices, values = by_width.setdefault(length, ([], bytearray()))
        indices.append(row)
        values += body[position : position + length]
        position += length
        row += 1
    groups = [
        (
            np.array(indices, dtype=np.int64),
            np.frombuffer(bytes(values), dtype=_VALUE).reshape(len(indices), width // 8),
        )
        for width, (indices, values) in by_width.items()
    ]
    return np.frombuffer(bytes(heads), dtype=prefix), groups


# Rows transposed this many at a time: a block of a hundred columns stays in the cache, where
# the whole chunk at once read each column's values a cache line apart (four times slower).
_BLOCK_ROWS = 2048


def _transpose(
    values: np.ndarray[Any, Any],
    columns: np.ndarray[Any, Any],
    wide: np.ndarray[Any, Any],
    targets: np.ndarray[Any, Any],
) -> None:
    """wide[targets[i], r] = values[r, columns[i]] as native floats, block by block."""
    every = len(targets) == len(wide) and bool((targets == np.arange(len(wide))).all())
    for start in range(0, len(values), _BLOCK_ROWS):
        end = start + _BLOCK_ROWS
        block = values[start:end].astype(np.float64).T[columns]
        if every:
            wide[:, start:end] = block
        else:
            wide[targets, start:end] = block


def feature_columns(
    data: bytes,
    head_fields: Sequence[pa.Field[Any]],
    names: Sequence[str],
    layouts: Mapping[int, Sequence[str]],
) -> list[pa.Array[Any]]:
    """Arrow arrays of `head_fields` (fixed-width, see binary.sql_columns), then one float64
    column per name of `names`: null where a row's layout lacks the name or its value is NaN.
    """
    head = binary.record_dtype([part for f in head_fields for part in binary.field_dtypes(f)])
    heads, groups = _tail_groups(binary.copy_body(data), head)
    arrays = binary.record_arrays(heads, head_fields, more_fields=2)
    if heads.size and (heads["layout_length"] != _LENGTH.itemsize).any():
        raise binary.BinaryLayoutError("a feature row without its layout")
    row_count = len(heads)
    layout_ids = heads["layout"]
    wide: np.ndarray[Any, Any] | None = None
    for indices, values in groups:
        ids = layout_ids[indices]
        width = values.shape[1]
        for layout in np.unique(ids):
            layout_names = layouts.get(int(layout))
            if layout_names is None or len(layout_names) != width:
                raise binary.BinaryLayoutError(f"feature layout {layout} is unknown or not {width}")
            at = {name: k for k, name in enumerate(layout_names)}
            wanted = [(j, at[n]) for j, n in enumerate(names) if n in at]
            columns = np.array([k for _, k in wanted], dtype=np.int64)
            targets = np.array([j for j, _ in wanted], dtype=np.int64)
            every_row = len(ids) == row_count and bool((ids == layout).all())
            if every_row and len(wanted) == len(names):
                # The usual chunk: one layout with every name, so no NaN to fill first.
                wide = np.empty((len(names), row_count))
                _transpose(values, columns, wide, targets)
                break
            if wide is None:
                wide = np.full((len(names), row_count), np.nan)
            if every_row:
                _transpose(values, columns, wide, targets)
            else:
                rows = ids == layout
                wide[np.ix_(targets, indices[rows])] = values[rows][:, columns].T
    if wide is None:
        wide = np.full((len(names), row_count), np.nan)
    # from_pandas: NaN (a missing name, a null value) is null, found in one pass in Arrow.
    arrays += [pa.array(column, type=pa.float64(), from_pandas=True) for column in wide]
    return arrays
