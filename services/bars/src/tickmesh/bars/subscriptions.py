"""Fan-out of bars to `BarService.Subscribe` streams, each with a bounded backlog.

Final bars and revisions queue in order and are never dropped; forming bars are coalesced
to the latest per symbol and timeframe. A subscriber whose backlog of finals passes the
bound is ended (the servicer answers RESOURCE_EXHAUSTED) and resumes from its change id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tickmesh.v1 import market_pb2

BarKey = tuple[str, int]  # symbol, timeframe enum


@dataclass(frozen=True)
class BarFilter:
    """Which bars a subscriber wants; empty sets mean everything."""

    symbols: frozenset[str] = frozenset()
    timeframes: frozenset[int] = frozenset()
    include_forming: bool = False

    def wants(self, bar: market_pb2.Bar) -> bool:
        """True when `bar` passes the symbol and timeframe filters."""
        return (not self.symbols or bar.symbol in self.symbols) and (
            not self.timeframes or bar.timeframe in self.timeframes
        )


class SubscriberOverflowError(Exception):
    """The subscriber fell too far behind and was ended."""


@dataclass(eq=False)  # identity semantics: subscriptions live in a set
class Subscription:
    """One subscriber's queue: finals in order, forming bars coalesced."""

    bar_filter: BarFilter
    backlog_limit: int
    finals: deque[market_pb2.Bar] = field(default_factory=deque)
    forming: dict[BarKey, market_pb2.Bar] = field(default_factory=dict)
    overflowed: bool = False
    # Called once when the backlog passes the limit: the stream may be blocked writing to a
    # reader that stopped reading, so it must be interrupted rather than wait to notice.
    on_overflow: Callable[[], None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer_finals(self, bars: Iterable[market_pb2.Bar]) -> None:
        """Queue finals this subscriber wants; mark it overflowed past the backlog limit."""
        for bar in bars:
            if self.bar_filter.wants(bar):
                self.finals.append(bar)
                # A final supersedes a forming version of the same bar still waiting.
                self.forming.pop((bar.symbol, bar.timeframe), None)
        if len(self.finals) > self.backlog_limit and not self.overflowed:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
        if self.finals or self.overflowed:
            self._ready.set()

    def offer_forming(self, bars: Iterable[market_pb2.Bar]) -> None:
        """Keep only the latest forming bar per symbol and timeframe."""
        if not self.bar_filter.include_forming:
            return
        for bar in bars:
            if self.bar_filter.wants(bar):
                self.forming[(bar.symbol, bar.timeframe)] = bar
        if self.forming:
            self._ready.set()

    async def next_bars(self) -> list[market_pb2.Bar]:
        """Wait for bars; finals first, then the coalesced forming bars."""
        while True:
            if self.overflowed:
                raise SubscriberOverflowError(
                    f"subscriber fell more than {self.backlog_limit} final bars behind"
                )
            if self.finals or self.forming:
                taken = list(self.finals)
                self.finals.clear()
                taken.extend(self.forming.values())
                self.forming.clear()
                return taken
            self._ready.clear()
            await self._ready.wait()


class BarHub:
    """Every open subscription of this process."""

    def __init__(self, backlog_limit: int) -> None:
        self._backlog_limit = backlog_limit
        self._subscriptions: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return len(self._subscriptions)

    def subscribe(self, bar_filter: BarFilter) -> Subscription:
        """Open a subscription; it receives every bar published from now on."""
        subscription = Subscription(bar_filter, self._backlog_limit)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Close a subscription."""
        self._subscriptions.discard(subscription)

    def publish_finals(self, bars: list[market_pb2.Bar]) -> None:
        """Hand persisted final bars and revisions, in change-id order, to every subscriber."""
        if bars:
            for subscription in self._subscriptions:
                subscription.offer_finals(bars)

    def publish_forming(self, bars: list[market_pb2.Bar]) -> None:
        """Hand forming bars to the subscribers that asked for them."""
        if bars:
            for subscription in self._subscriptions:
                subscription.offer_forming(bars)
