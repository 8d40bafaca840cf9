"""Fan-out of committed analytics updates to `AnalyticsService.Subscribe` streams, each with a bounded backlog.

Updates are offered only after their rows are committed, so a subscriber never sees
something GetIndicators could not return. A subscriber whose backlog passes the bound is
ended (RESOURCE_EXHAUSTED) and may resume from the open time it last received.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tickmesh.analytics.engine import AnalyticsUpdate


@dataclass(frozen=True)
class UpdateFilter:
    """Which updates a subscriber wants; empty sets mean everything."""

    symbols: frozenset[str] = frozenset()
    timeframes: frozenset[int] = frozenset()

    def wants(self, symbol: str, timeframe: int) -> bool:
        """True when a stream passes the symbol and timeframe filters."""
        return (not self.symbols or symbol in self.symbols) and (
            not self.timeframes or timeframe in self.timeframes
        )


class SubscriberOverflowError(Exception):
    """The subscriber fell too far behind and was ended."""


@dataclass(eq=False)  # identity equality: subscriptions live in a set
class Subscription:
    """One subscriber's queue of updates, in commit order."""

    update_filter: UpdateFilter
    backlog_limit: int
    pending: deque[AnalyticsUpdate] = field(default_factory=deque)
    overflowed: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, updates: Iterable[AnalyticsUpdate]) -> None:
        """Queue the updates this subscriber wants; mark it overflowed past the backlog limit."""
        wants = self.update_filter.wants
        self.pending.extend(u for u in updates if wants(u.symbol, u.timeframe))
        if len(self.pending) > self.backlog_limit:
            self.overflowed = True
            self.pending.clear()
        if self.pending or self.overflowed:
            self._ready.set()

    async def next_updates(self) -> list[AnalyticsUpdate]:
        """Wait for updates and take all that are queued."""
        while True:
            if self.overflowed:
                raise SubscriberOverflowError(
                    f"subscriber fell more than {self.backlog_limit} updates behind"
                )
            if self.pending:
                taken = list(self.pending)
                self.pending.clear()
                return taken
            self._ready.clear()
            await self._ready.wait()


class AnalyticsHub:
    """Every open subscription of this process."""

    def __init__(self, backlog_limit: int) -> None:
        self._backlog_limit = backlog_limit
        self._subscriptions: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return len(self._subscriptions)

    def subscribe(self, update_filter: UpdateFilter) -> Subscription:
        """Open a subscription; it receives every update published from now on."""
        subscription = Subscription(update_filter, self._backlog_limit)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Close a subscription."""
        self._subscriptions.discard(subscription)

    def publish(self, updates: list[AnalyticsUpdate]) -> None:
        """Hand committed updates, in order, to every subscriber."""
        if updates:
            for subscription in self._subscriptions:
                subscription.offer(updates)
