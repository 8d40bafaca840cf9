"""Binary COPY of fixed-width columns to Arrow arrays, vectorized with numpy.

Text COPY spends about half of a feature row's time formatting its floats on the server
(and pyarrow more parsing them). Binary COPY sends them as they are, and when every field
of a row has a fixed width, the rows form one numpy record array: no per-value Python at
all. So each analytics column is sent in a fixed-width form (sql_columns) and rebuilt here
(to_arrow):

- nullable floats as NaN (the tables never store NaN: analytics writes NULL instead);
- nullable times as -infinity (INT64_MIN), times as microseconds since 2000-01-01;
- the feature version as char(10) (a varchar(10) column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tickmesh.datasets.schema import TIME

# PostgreSQL's binary timestamps count microseconds from 2000-01-01.
_PG_EPOCH_US = 946_684_800_000_000
_INT64_MIN = np.iinfo(np.int64).min
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_VERSION_WIDTH = 10


class BinaryLayoutError(ValueError):
    """Rows that do not have the fixed layout expected (the message says what differed)."""


def sql_columns(expression: str, field: pa.Field[Any]) -> list[str]:
    """The fixed-width SQL expressions that carry `field`, computed from `expression`."""
    if field.type == TIME:
        return [f"coalesce({expression}, '-infinity')" if field.nullable else expression]
    if field.type == pa.float64():
        return [f"coalesce({expression}, 'NaN')::float8" if field.nullable else expression]
    if field.type == pa.string():
        return [f"rpad(coalesce({expression}, ''), {_VERSION_WIDTH})::char({_VERSION_WIDTH})"]
    return [expression]


def field_dtypes(field: pa.Field[Any]) -> list[str]:
    """The numpy dtypes of the binary fields that carry `field` (see sql_columns)."""
    if field.type in (TIME, pa.int64()):
        return [">i8"]
    if field.type == pa.int32():
        return [">i4"]
    if field.type == pa.float64():
        return [">f8"]
    if field.type == pa.string():
        return [f"S{_VERSION_WIDTH}"]
    raise TypeError(f"no binary form for {field.name} ({field.type})")


def record_dtype(parts: list[str]) -> np.dtype[Any]:
    """The dtype of a binary COPY row of fields of dtypes `parts`: their count, then each
    field's length and value."""
    names = ["count"]
    formats = [">i2"]
    for index, part in enumerate(parts):
        names += [f"length{index}", f"value{index}"]
        formats += [">i4", part]
    return np.dtype({"names": names, "formats": formats})


def copy_body(data: bytes) -> memoryview:
    """The rows of a binary COPY stream, without its header and trailer."""
    if not data.startswith(_SIGNATURE):
        raise BinaryLayoutError("not a binary COPY stream")
    extension = int.from_bytes(data[15:19], "big")
    start = 19 + extension
    if data[-2:] != b"\xff\xff":
        raise BinaryLayoutError("binary COPY stream without its trailer")
    return memoryview(data)[start:-2]


def _with_nulls(array: pa.Array[Any], nulls: np.ndarray[Any, Any]) -> pa.Array[Any]:
    if not nulls.any():
        return array
    validity = pa.array(~nulls).buffers()[1]
    return pa.Array.from_buffers(array.type, len(array), [validity, *array.buffers()[1:]])


def _column(field: pa.Field[Any], values: list[np.ndarray[Any, Any]]) -> pa.Array[Any]:
    if field.type == TIME:
        raw = values[0].astype(np.int64)
        nulls = raw == _INT64_MIN
        micros = np.where(nulls, 0, raw + _PG_EPOCH_US)
        return _with_nulls(pa.array(micros, type=TIME), nulls)
    if field.type == pa.float64():
        floats = values[0].astype(np.float64)
        mask = np.isnan(floats) if field.nullable else None
        return pa.array(floats, type=pa.float64(), mask=mask)
    if field.type == pa.string():
        # A feature version: a handful of distinct values, so each is decoded once.
        distinct, at = np.unique(values[0], return_inverse=True)
        text = [value.rstrip().decode() for value in distinct.tolist()]
        strings = pa.array([t or None for t in text], type=pa.string())
        return strings.take(at.astype(np.int32))
    integers: pa.Array[Any] = pa.array(values[0].astype(np.int64)).cast(field.type)
    return integers


def record_arrays(
    rows: np.ndarray[Any, Any], fields: Sequence[pa.Field[Any]], more_fields: int = 0
) -> list[pa.Array[Any]]:
    """Arrow arrays of `fields` from rows of their record_dtype, checking that every row has
    them all (and `more_fields` fields after them) at their fixed widths."""
    per_field = [field_dtypes(f) for f in fields]
    parts = [part for group in per_field for part in group]
    if rows.size and (rows["count"] != len(parts) + more_fields).any():
        raise BinaryLayoutError("a row has an unexpected number of fields")
    for index, part in enumerate(parts):
        if rows.size and (rows[f"length{index}"] != np.dtype(part).itemsize).any():
            raise BinaryLayoutError(f"field {index} is NULL or not {np.dtype(part).itemsize} bytes")
    arrays = []
    position = 0
    for field, group in zip(fields, per_field, strict=True):
        values = [rows[f"value{position + k}"] for k in range(len(group))]
        arrays.append(_column(field, values))
        position += len(group)
    return arrays


def to_arrow(data: bytes, fields: Sequence[pa.Field[Any]]) -> list[pa.Array[Any]]:
    """Arrow arrays of `fields` from a binary COPY of their sql_columns."""
    record = record_dtype([part for f in fields for part in field_dtypes(f)])
    body = copy_body(data)
    if len(body) % record.itemsize:
        raise BinaryLayoutError("a row is not of the expected fixed width")
    return record_arrays(np.frombuffer(body, dtype=record), fields)
