"""Protobuf wire format written by hand where building messages would cost more.

Replays send stored, already serialized messages framed as a repeated field of their
response; the collector writes small enum columns as packed bytes (see
collector.binance.small_enums).
"""

from __future__ import annotations

from collections.abc import Sequence


def varint(value: int) -> bytes:
    """The protobuf varint of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def embedded(field_number: int, messages: Sequence[bytes]) -> bytes:
    """`messages` as occurrences of a length-delimited field of an enclosing message."""
    tag = varint(field_number << 3 | 2)
    # Messages of a log share a few lengths: one header per length, and the interleaving
    # done by C loops (map, slice assignment), so a bar costs a fraction of a microsecond.
    sizes = list(map(len, messages))
    heads = {size: tag + varint(size) for size in set(sizes)}
    parts = [b""] * (2 * len(sizes))
    parts[0::2] = map(heads.__getitem__, sizes)
    parts[1::2] = messages
    return b"".join(parts)
