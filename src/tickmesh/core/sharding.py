"""The shard rule: a symbol belongs to shard crc32(symbol) mod n, the same in every process and language."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass


def shard_of(symbol: str, shard_count: int) -> int:
    """Return the shard (0..shard_count-1) that owns `symbol`: CRC-32 of its UTF-8 name, mod n."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    return zlib.crc32(symbol.encode("utf-8")) % shard_count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count`; shard 0 of 1 owns every symbol."""

    index: int = 0
    count: int = 1

    def owns(self, symbol: str) -> bool:
        """Tell whether this shard owns `symbol`."""
        return shard_of(symbol, self.count) == self.index


def shard_address(symbol: str, addresses: Sequence[str]) -> str:
    """Return the address of the bar service owning `symbol`, given every shard's address by index."""
    return addresses[shard_of(symbol, len(addresses))]
