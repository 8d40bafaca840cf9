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
        self._lock = asyncio.Lock()

    async def contains(self, instrument: InstrumentId) -> bool:
        """True when `instrument` is registered; Unavailable when the registry was never read."""
        age = time.monotonic() - self._asked_at
        if age > self._ttl or (not self._has(instrument) and age > MISS_REFRESH_SECONDS):
            await self._refresh(self._asked_at)
        if self._known is None:
            raise Unavailable("the instrument registry (collector) is unavailable")
        return instrument in self._known

    def _has(self, instrument: InstrumentId) -> bool:
        return self._known is not None and instrument in self._known

    async def _refresh(self, seen_asked_at: float) -> None:
        """Re-read the list once for everyone waiting (a socket burst makes one call)."""
        async with self._lock:
            if self._asked_at != seen_asked_at:
                return  # another socket read it while this one waited
            self._asked_at = time.monotonic()
            try:
                reply = await self._backends.collector.call(
                    self._backends.symbols.ListSymbols,
                    symbol_service_pb2.ListSymbolsRequest(include_inactive=True),
                )
            except DomainError as error:
                # The last list stays in use: a collector restart does not refuse every socket.
                log.warning("instrument registry not refreshed: %s", error)
                return
            known = set()
            for symbol in reply.symbols:
                try:
                    known.add(InstrumentId(int(symbol.exchange), symbol.symbol))
                except InstrumentError:
                    continue  # a venue this gateway does not know cannot be subscribed anyway
            self._known = frozenset(known)
