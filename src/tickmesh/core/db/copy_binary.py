"""PostgreSQL's binary COPY format built from integers, numeric included, without Decimal.

A numeric in binary is (ndigits, weight, sign, dscale, base-10000 digits). From an integer
mantissa and a decimal scale those digits are a few integer divisions, which numpy does for a
whole column of a batch at once: no Decimal, no text for the server's numeric parser. The
server normalises what it receives (make_result strips leading and trailing zero digits), so
every value of a column is written with the same number of digits.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

# Signature, flags (no OIDs), header extension length; the trailer is a field count of -1.
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"  # a field of length -1
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC, the origin of binary timestamps
NUMERIC_SIGN_NEGATIVE = 0x4000
# An int64 mantissa has at most 19 digits, 22 once padded to a 4-digit group boundary.
_GROUPS = 6
_INT64_MIN = -(2**63)
# Per pad (0..3 zeros appended so the fraction fills whole groups): 10**(4 - pad), 10**pad.
_LOW_DIVISOR = np.array([10_000, 1_000, 100, 10], dtype=np.int64)
_LOW_FACTOR = np.array([1, 10, 100, 1_000], dtype=np.int64)

IntArray = npt.NDArray[np.int64]
ByteMatrix = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class BinaryRows:
    """Rows already in binary COPY form: each row's fields (length-prefixed), no field count.

    `keys` returns each row's conflict key; it is called only to de-duplicate a batch that
    holds a key twice (rare), so writers need not build a key per row up front.
    """

    fields: list[bytes]
    keys: Callable[[], list[tuple[Any, ...]]]

    def __len__(self) -> int:
        return len(self.fields)

    def last_per_key(self) -> BinaryRows:
        """Keep the last row of each key."""
        latest = dict(zip(self.keys(), self.fields, strict=True))
        keys = list(latest)
        return BinaryRows(list(latest.values()), lambda: keys)

    def data(self, field_count: int) -> bytes:
        """The whole binary COPY stream of these rows, each with `field_count` fields."""
        count = struct.pack(">h", field_count)
        # The field count starts every row, so it doubles as the separator of one join.
        return b"".join((HEADER, count, count.join(self.fields), TRAILER))


@dataclass(slots=True)
class StreamedRows:
    """Binary COPY rows built chunk by chunk while COPY sends the chunks before.

    PostgreSQL inserts chunk k while the writer encodes chunk k+1, instead of the two taking
    turns. `fields` grows as chunks are built; `data` (re)starts from the first row, so a
    fallback after a failed COPY can send the rows again; `complete` builds whatever is left.
    """

    chunks: Iterator[list[bytes]]
    count: int
    keys: Callable[[], list[tuple[Any, ...]]]
    fields: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return self.count

    def complete(self) -> BinaryRows:
        """Every row, the ones not yet streamed built now."""
        for chunk in self.chunks:
            self.fields.extend(chunk)
        return BinaryRows(self.fields, self.keys)

    async def data(self, field_count: int) -> AsyncIterator[bytes]:
        """The binary COPY stream of these rows: those built already, then chunk by chunk."""
        count = struct.pack(">h", field_count)
        # Rows an earlier, failed stream built go first, as one message.
        yield HEADER + (count + count.join(self.fields) if self.fields else b"")
        for chunk in self.chunks:
            self.fields.extend(chunk)
            yield count + count.join(chunk)
            # One turn of the event loop first, to flush what the socket did not take at once.
            await asyncio.sleep(0)
        yield TRAILER


def numeric_field(mantissa: int, scale: int) -> bytes:
    """One numeric field of mantissa * 10**-scale (any Python int; the rare, slow path)."""
    pad = -scale % 4
    value = abs(mantissa) * 10**pad
    digits: list[int] = []
    while value:
        value, digit = divmod(value, 10_000)
        digits.append(digit)
    digits.reverse()
    weight = len(digits) - 1 - (scale + pad) // 4
    sign = NUMERIC_SIGN_NEGATIVE if mantissa < 0 else 0
    size = len(digits)
    return struct.pack(f">ihhHh{size}h", 8 + 2 * size, size, weight, sign, scale, *digits)


def numeric_fields(mantissas: IntArray, scales: IntArray) -> ByteMatrix:
    """Numeric fields of mantissas[i] * 10**-scales[i], one row of bytes per value.

    ValueError for the one int64 without a positive counterpart (callers take the slow path).
    """
    if mantissas.size and int(mantissas.min()) == _INT64_MIN:
        raise ValueError("int64 minimum has no absolute value in int64")
    negative = mantissas < 0
    values = np.abs(mantissas)
    low_scale, high_scale = int(scales.min(initial=0)), int(scales.max(initial=0))
    # One scale per batch is the rule (one instrument, or one venue's), so the pad is a
    # scalar and no per-row lookups are needed; mixed scales take arrays.
    pad: int | IntArray = -low_scale % 4 if low_scale == high_scale else -scales % 4
    divisor = _LOW_DIVISOR[pad]
    # The lowest group holds the last 4 - pad digits followed by the pad's zeros.
    groups = [values % divisor * _LOW_FACTOR[pad]]
    rest = values // divisor
    # Only as many groups as the largest value needs (two or three for prices).
    while len(groups) < _GROUPS and rest.any():
        rest, group = np.divmod(rest, 10_000)
        groups.append(group)
    size = len(groups)
    out = np.empty((values.size, 6 + size), dtype=">i2")
    out[:, 0] = 0  # the field length, an int32 below 32768: high half 0
    out[:, 1] = 8 + 2 * size
    out[:, 2] = size
    out[:, 3] = size - 1 - (scales + pad) // 4
    out[:, 4] = np.where(negative, NUMERIC_SIGN_NEGATIVE, 0)
    out[:, 5] = scales
    for position, group in enumerate(groups):
        out[:, 5 + size - position] = group
    return out.view(np.uint8)


def fixed_fields(values: npt.ArrayLike, dtype: str) -> ByteMatrix:
    """Fields of a fixed-size type (">i8", ">i4", ">f8"), one row of bytes per value."""
    column = np.asarray(values)
    fields = np.empty(column.size, dtype=[("size", ">i4"), ("value", dtype)])
    fields["size"] = fields.dtype["value"].itemsize
    fields["value"] = column
    return fields.view(np.uint8).reshape(column.size, fields.dtype.itemsize)


def text_field(text: str) -> bytes:
    """One text (varchar) field."""
    encoded = text.encode()
    return struct.pack(">i", len(encoded)) + encoded
