"""The shard rule: a symbol belongs to shard crc32(symbol) mod n, the same in every process and language.

Clients route by it too: given every bar shard's address in shard order (what
TICKMESH_BARS_ADDRESSES lists), a symbol's bar service is `shard_address(symbol, addresses)`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

# As many bar shards as BarsSettings.bars_shard_count allows.
MAX_SHARDS = 1024


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


def parse_shard_addresses(text: str) -> tuple[str, ...]:
    """Split a comma-separated list of host:port addresses in shard order; ValueError says what is wrong.

    Each shard must appear once: two positions at one address would send that server the
    symbols of a shard it does not own, which it refuses.
    """
    addresses = tuple(item.strip() for item in text.split(","))
    if not 1 <= len(addresses) <= MAX_SHARDS:
        raise ValueError(f"list 1 to {MAX_SHARDS} addresses")
    for position, address in enumerate(addresses):
        host, colon, port = address.rpartition(":")
        if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"address {position} ({address!r}) is not host:port")
    duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
    if duplicates:
        raise ValueError(f"each shard needs its own address; {', '.join(duplicates)} repeats")
    return addresses
