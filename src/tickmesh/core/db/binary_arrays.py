"""One-dimensional PostgreSQL arrays of fixed-width values read whole by numpy.

A query that aggregates a page of rows into arrays can send each as `array_send(...)`: one
bytea in PostgreSQL's binary array format, which numpy reads in one step, where asyncpg
would build a Python object an element (for timestamps, a datetime an element).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

# ndim, has-nulls flag, element type OID; then per dimension its length and lower bound.
_HEADER = struct.Struct(">iiIii")
_EMPTY_HEADER = struct.Struct(">iiI")


class BinaryArrayError(ValueError):
    """Bytes that are not a one-dimensional array of the expected fixed width, no NULLs."""


def fixed_width_array(data: bytes | None, dtype: str) -> npt.NDArray[Any]:
    """The elements of array_send's bytes (None: the NULL of an aggregate over no rows) as a
    numpy array of `dtype` (big-endian, as sent: e.g. ">i8" for bigint and timestamptz)."""
    element = np.dtype(dtype)
    if data is None or _EMPTY_HEADER.unpack_from(data)[0] == 0:
        return np.empty(0, element)
    dimensions, has_nulls, _, length, _ = _HEADER.unpack_from(data)
    if dimensions != 1 or has_nulls:
        raise BinaryArrayError(f"{dimensions} dimensions, NULLs {bool(has_nulls)}: not a list")
    # Each element is its length (int4) then its value.
    record = np.dtype([("length", ">i4"), ("value", element)])
    if len(data) != _HEADER.size + length * record.itemsize:
        raise BinaryArrayError(f"{length} elements of {dtype} do not fill {len(data)} bytes")
    elements = np.frombuffer(data, record, count=length, offset=_HEADER.size)
    if (elements["length"] != element.itemsize).any():
        raise BinaryArrayError(f"an element is not {element.itemsize} bytes wide")
    return elements["value"]
