"""Binary COPY of fixed-width columns to Arrow arrays, vectorized with numpy.

Text COPY spends most of its time formatting floats and numerics on the server and parsing
them again here. Binary COPY sends them as they are, and when every field of a row has a
fixed width, the rows form one numpy record array: no per-value Python at all. So each
Arrow column is sent in a fixed-width form (sql_columns) and rebuilt here (to_arrow):

- exact decimals as two int8 (integer part, fraction in units of 1e-18) and a null flag;
  numpy combines them into the 128-bit integers of decimal128(38, 18);
- nullable floats as NaN (the tables never store NaN: analytics writes NULL instead);
- nullable times as -infinity (INT64_MIN), times as microseconds since 2000-01-01;
- the feature version as char(10) (a varchar(10) column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tickmesh.datasets.schema import EXACT, TIME

# PostgreSQL's binary timestamps count microseconds from 2000-01-01.
_PG_EPOCH_US = 946_684_800_000_000
_INT64_MIN = np.iinfo(np.int64).min
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_TEN_18 = 10**18
_VERSION_WIDTH = 10


class BinaryLayoutError(ValueError):
    """Rows that do not have the fixed layout expected (the message says what differed)."""


def sql_columns(expression: str, field: pa.Field[Any]) -> list[str]:
    """The fixed-width SQL expressions that carry `field`, computed from `expression`."""
    if field.type == EXACT:
        whole = f"trunc({expression})"
        columns = [
            f"coalesce({whole}::int8, 0)",
            f"coalesce((({expression}) - {whole}) * 1e18, 0)::int8",
        ]
        return [*columns, f"({expression}) IS NULL"] if field.nullable else columns
    if field.type == TIME:
        return [f"coalesce({expression}, '-infinity')" if field.nullable else expression]
    if field.type == pa.float64():
        return [f"coalesce({expression}, 'NaN')::float8" if field.nullable else expression]
    if field.type == pa.string():
        return [f"rpad(coalesce({expression}, ''), {_VERSION_WIDTH})::char({_VERSION_WIDTH})"]
    return [expression]


def exactness_check(expressions: Sequence[str]) -> str:
    """A boolean column: true where a decimal has more than 18 decimals (cannot be exact)."""
    tests = [f"coalesce(scale({e}) > 18, false)" for e in expressions]
    return " OR ".join(tests) if tests else "false"


def _dtypes(field: pa.Field[Any]) -> list[str]:
    if field.type == EXACT:
        return [">i8", ">i8", "?"] if field.nullable else [">i8", ">i8"]
    if field.type in (TIME, pa.int64()):
        return [">i8"]
    if field.type == pa.int32():
        return [">i4"]
    if field.type == pa.float64():
        return [">f8"]
    if field.type == pa.string():
        return [f"S{_VERSION_WIDTH}"]
    raise TypeError(f"no binary form for {field.name} ({field.type})")


def _record_dtype(parts: list[str]) -> np.dtype[Any]:
    names = ["count"]
    formats = [">i2"]
    for index, part in enumerate(parts):
        names += [f"length{index}", f"value{index}"]
        formats += [">i4", part]
    return np.dtype({"names": names, "formats": formats})


def _body(data: bytes) -> memoryview:
    if not data.startswith(_SIGNATURE):
        raise BinaryLayoutError("not a binary COPY stream")
    extension = int.from_bytes(data[15:19], "big")
    start = 19 + extension
    if data[-2:] != b"\xff\xff":
        raise BinaryLayoutError("binary COPY stream without its trailer")
    return memoryview(data)[start:-2]


def _decimal128(whole: np.ndarray[Any, Any], fraction: np.ndarray[Any, Any]) -> bytes:
    """The 16-byte little-endian two's complement of whole * 1e18 + fraction, per row."""
    negative = (whole < 0) | (fraction < 0)
    a = np.abs(whole).astype(np.uint64)
    b = np.abs(fraction).astype(np.uint64)
    mask = np.uint64(0xFFFFFFFF)
    shift = np.uint64(32)
    a_lo, a_hi = a & mask, a >> shift
    c_lo, c_hi = np.uint64(_TEN_18 & 0xFFFFFFFF), np.uint64(_TEN_18 >> 32)
    lo_lo, lo_hi, hi_lo = a_lo * c_lo, a_lo * c_hi, a_hi * c_lo
    middle = (lo_lo >> shift) + (lo_hi & mask) + (hi_lo & mask)
    low = (lo_lo & mask) | ((middle & mask) << shift)
    high = a_hi * c_hi + (lo_hi >> shift) + (hi_lo >> shift) + (middle >> shift)
    summed = low + b
    high = high + (summed < low).astype(np.uint64)
    low = summed
    # Two's complement of the negative ones: invert both halves, add one with carry.
    inverted_low = ~low + np.uint64(1)
    inverted_high = ~high + (inverted_low == 0).astype(np.uint64)
    low = np.where(negative, inverted_low, low)
    high = np.where(negative, inverted_high, high)
    out = np.empty((len(low), 2), dtype="<u8")
    out[:, 0] = low
    out[:, 1] = high
    return out.tobytes()


def _with_nulls(array: pa.Array[Any], nulls: np.ndarray[Any, Any]) -> pa.Array[Any]:
    if not nulls.any():
        return array
    validity = pa.array(~nulls).buffers()[1]
    return pa.Array.from_buffers(array.type, len(array), [validity, *array.buffers()[1:]])


def _column(field: pa.Field[Any], values: list[np.ndarray[Any, Any]]) -> pa.Array[Any]:
    if field.type == EXACT:
        decimals = _decimal128(values[0].astype(np.int64), values[1].astype(np.int64))
        array = pa.Array.from_buffers(EXACT, len(values[0]), [None, pa.py_buffer(decimals)])
        return _with_nulls(array, values[2]) if field.nullable else array
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
        text = np.char.rstrip(values[0].astype(f"U{_VERSION_WIDTH}"))
        return pa.array(text, type=pa.string(), mask=text == "")
    integers: pa.Array[Any] = pa.array(values[0].astype(np.int64)).cast(field.type)
    return integers


def to_arrow(data: bytes, fields: Sequence[pa.Field[Any]]) -> tuple[list[pa.Array[Any]], bool]:
    """Arrow arrays of `fields` from a binary COPY of their sql_columns, then the exactness
    column; and whether any row failed the exactness check."""
    per_field = [_dtypes(f) for f in fields]
    parts = [part for group in per_field for part in group] + ["?"]
    record = _record_dtype(parts)
    body = _body(data)
    if len(body) % record.itemsize:
        raise BinaryLayoutError("a row is not of the expected fixed width")
    rows = np.frombuffer(body, dtype=record)
    if rows.size and (rows["count"] != len(parts)).any():
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
    inexact = bool(rows[f"value{position}"].any()) if rows.size else False
    return arrays, inexact
