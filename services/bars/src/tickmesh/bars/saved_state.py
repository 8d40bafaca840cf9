"""The engine state the bar service saves (heads and retained final rows) as bytes.

A whole market rewrites every instrument's head at every minute close: 2,000 heads of about
1.9 kB of JSON. As JSONB PostgreSQL parsed each one and, past its 2 kB TOAST threshold,
compressed it with pglz; the 2,000 upserts took 150-180 ms alone and 180-370 ms in a busy
close, the longest step between a minute's close and its final bars reaching subscribers.
As MessagePack a head is about 1.2 kB, stored as it is (bytea, migration 0013), and with room
left on each page the update stays on it: 22 ms for the same 2,000.

MessagePack holds integers of up to 64 bits. A value with a larger one (a mantissa that
outgrew them) is saved as JSON text instead; JSON starts with `{` or `[`, which no MessagePack
map or array does, so `decode` tells them apart by the first byte. The JSONB values stored
before migration 0013 became that JSON text.
"""

from __future__ import annotations

from typing import Any

import msgspec

_PACK = msgspec.msgpack.Encoder()
_JSON = msgspec.json.Encoder()
_JSON_FIRST_BYTES = frozenset(b"{[")


def encode(value: dict[str, Any] | list[Any]) -> bytes:
    """`value` (a head or a final row) as MessagePack, or as JSON if an integer needs more than 64 bits."""
    try:
        return _PACK.encode(value)
    except OverflowError:
        return _JSON.encode(value)


def decode(data: bytes) -> Any:
    """A value saved by `encode` (or JSON text saved before it)."""
    if data and data[0] in _JSON_FIRST_BYTES:
        return msgspec.json.decode(data)
    return msgspec.msgpack.decode(data)
