"""The instrument registry as the WebSocket route sees it: the collector's list, read seldom.

Each socket of an instrument the gateway has no socket for opens two upstream streams (bars,
indicators), so a client naming made-up instruments would open streams without bound. The
route admits only registered instruments (deactivated ones included: their history is still
served). The list is re-read when older than its time to live, and at most about once a
second on a miss, so an instrument an admin just added is served at once while a client
cycling through unknown names costs one `ListSymbols` a second at most.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tickmesh.core.errors import DomainError, Unavailable
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.gateway.backends import Backends
from tickmesh.v2 import symbol_service_pb2

log = logging.getLogger(__name__)

# How soon a miss may re-read the registry (seconds).
MISS_REFRESH_SECONDS = 1.0


class InstrumentRegistry:
    """Which instruments exist, from `SymbolService.ListSymbols`, cached."""

    def __init__(self, backends: Backends, ttl_seconds: float) -> None:
        self._backends = backends
        self._ttl = ttl_seconds
        self._known: frozenset[InstrumentId] | None = None
        self._asked_at = float("-inf")  # the last attempt, successful or not
        # The read in flight: every socket arriving meanwhile waits for it (one call a burst).
        self._reading: asyncio.Task[None] | None = None

    async def contains(self, instrument: InstrumentId) -> bool:
        """True when `instrument` is registered; Unavailable when the registry was never read."""
        if self._reading is None:
            age = time.monotonic() - self._asked_at
            if age > self._ttl or (not self._has(instrument) and age > MISS_REFRESH_SECONDS):
                self._reading = asyncio.create_task(self._read(), name="ws-registry-read")
        if self._reading is not None:
            # Shielded: a socket that goes away does not cancel the read the others wait for.
            await asyncio.shield(self._reading)
        if self._known is None:
            raise Unavailable("the instrument registry (collector) is unavailable")
        return instrument in self._known

    def invalidate(self) -> None:
        """Re-read the list on the next lookup (this replica just changed the registry)."""
        self._asked_at = float("-inf")

    def _has(self, instrument: InstrumentId) -> bool:
        return self._known is not None and instrument in self._known

    async def _read(self) -> None:
        """Read the list once; on failure the last list stays in use."""
        self._asked_at = time.monotonic()
        try:
            reply = await self._backends.collector.call(
                self._backends.symbols.ListSymbols,
                symbol_service_pb2.ListSymbolsRequest(include_inactive=True),
            )
        except DomainError as error:
            # A collector restart does not refuse every socket while an older list is known.
            log.warning("instrument registry not refreshed: %s", error)
            return
        finally:
            self._reading = None
        known = set()
        for symbol in reply.symbols:
            try:
                known.add(InstrumentId(int(symbol.exchange), symbol.symbol))
            except InstrumentError:
                continue  # a venue this gateway does not know cannot be subscribed anyway
        self._known = frozenset(known)
