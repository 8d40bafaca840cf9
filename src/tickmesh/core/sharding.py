"""The shard rule: an instrument belongs to shard crc32("<venue>:<symbol>") mod n, in every process and language.

Clients route by it too: given every bar shard's address in shard order (what
TICKMESH_BARS_ADDRESSES lists), an instrument's bar service is
`shard_address(instrument, addresses)`. The key is the instrument's text form
("binance_usdm:BTCUSDT"), so the same symbol on two venues may live on different shards.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from tickmesh.core.errors import FailedPrecondition
from tickmesh.core.instruments import InstrumentId

# As many bar shards as BarsSettings.bars_shard_count allows.
MAX_SHARDS = 1024


def shard_of(instrument: InstrumentId, shard_count: int) -> int:
    """Return the shard (0..shard_count-1) owning `instrument`: CRC-32 of its UTF-8 text form, mod n."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    return zlib.crc32(str(instrument).encode("utf-8")) % shard_count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count`; shard 0 of 1 owns every instrument."""

    index: int = 0
    count: int = 1

    def owns(self, instrument: InstrumentId) -> bool:
        """Tell whether this shard owns `instrument`."""
        return shard_of(instrument, self.count) == self.index


def check_owned(shard: Shard, instruments: Sequence[InstrumentId], service: str = "bar") -> None:
    """FailedPrecondition when an instrument belongs to another shard: the caller routed it wrong.

    Only the owner builds an instrument's bars (or its live analytics), keeps its cache and
    streams it, so a misrouted call is refused with where it belongs rather than answered partly.
    """
    for instrument in instruments:
        if not shard.owns(instrument):
            raise FailedPrecondition(
                f"instrument: {instrument} belongs to {service} shard "
                f"{shard_of(instrument, shard.count)} of {shard.count}, not {shard.index}; "
                f'route by crc32("{instrument}") mod {shard.count}'
            )


def shard_address(instrument: InstrumentId, addresses: Sequence[str]) -> str:
    """Return the address of the bar service owning `instrument`, given every shard's address by index."""
    return addresses[shard_of(instrument, len(addresses))]


def parse_shard_addresses(text: str) -> tuple[str, ...]:
    """Split a comma-separated list of host:port addresses in shard order; ValueError says what is wrong.

    Each shard must appear once: two positions at one address would send that server the
    instruments of a shard it does not own, which it refuses.
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
