"""Fan-out of in-order updates to many stream subscribers, each with a bounded backlog.

Every subscriber gets every update it wants, in order; one that falls more than its
backlog behind is marked overflowed (and `on_overflow` interrupts its stream, which may be
blocked writing to a reader that stopped reading), so one slow client never holds memory
or other clients hostage. Services add their own filters and coalescing on top.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Container, Hashable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="BoundedSubscription")  # type: ignore[type-arg]


class SubscriberOverflowError(Exception):
    """The subscriber fell too far behind and was ended."""


class BoundedSubscription(Generic[T]):
    """One subscriber's queue of updates in order, bounded by `backlog_limit`."""

    def __init__(self, wants: Callable[[T], bool], backlog_limit: int) -> None:
        self.wants = wants
        self.backlog_limit = backlog_limit
        self.queued: deque[T] = deque()
        self.overflowed = False
        self.on_overflow: Callable[[], None] | None = None
        self._ready = asyncio.Event()

    def offer(self, items: Iterable[T]) -> None:
        """Queue the items this subscriber wants; past the limit, mark it overflowed."""
        for item in items:
            if self.wants(item):
                self.queued.append(item)
                self.on_queued(item)
        if len(self.queued) > self.backlog_limit and not self.overflowed:
            self.overflowed = True
            self.queued.clear()
            if self.on_overflow is not None:
                self.on_overflow()
        if self.queued or self.overflowed:
            self._ready.set()

    def on_queued(self, item: T) -> None:
        """Hook: an item was queued (subclasses drop what it supersedes)."""

    def has_extra(self) -> bool:
        """Hook: whether a subclass holds items outside the ordered queue."""
        return False

    def take_extra(self, taken: list[T]) -> None:
        """Hook: append a subclass's extra items after the queued ones."""

    def wake(self) -> None:
        """Wake the stream because extra items arrived."""
        self._ready.set()

    async def next_items(self) -> list[T]:
        """Wait for items and take all that are waiting; SubscriberOverflowError when overflowed."""
        while True:
            if self.overflowed:
                raise SubscriberOverflowError(
                    f"subscriber fell more than {self.backlog_limit} updates behind; "
                    "resume from the last one received"
                )
            if self.queued or self.has_extra():
                taken = list(self.queued)
                self.queued.clear()
                self.take_extra(taken)
                return taken
            self._ready.clear()
            await self._ready.wait()


class Fanout(Generic[S]):
    """The open subscriptions of one process, indexed by the keys (instruments) they follow.

    A gateway opens one stream per watched instrument: with thousands of them, offering every
    published item to every subscription (each testing its filter) costs subscriptions x items
    per publish, which starved the services of a whole market. `route` hands each keyed
    subscription only the items of its keys, and every item to the unkeyed ones.
    """

    def __init__(self) -> None:
        self._subscriptions: set[S] = set()
        self._unkeyed: set[S] = set()
        self._by_key: dict[Hashable, set[S]] = {}
        self._keys: dict[S, frozenset[Hashable]] = {}

    def __len__(self) -> int:
        return len(self._subscriptions)

    def __iter__(self) -> Iterator[S]:
        return iter(list(self._subscriptions))

    def add(self, subscription: S, keys: Iterable[Hashable] = ()) -> S:
        """Register a subscription; with keys, `route` offers it only the items of those keys."""
        self._subscriptions.add(subscription)
        wanted = frozenset(keys)
        if not wanted:
            self._unkeyed.add(subscription)
            return subscription
        self._keys[subscription] = wanted
        for key in wanted:
            self._by_key.setdefault(key, set()).add(subscription)
        return subscription

    def discard(self, subscription: S) -> None:
        """Forget a subscription."""
        self._subscriptions.discard(subscription)
        self._unkeyed.discard(subscription)
        for key in self._keys.pop(subscription, ()):
            holders = self._by_key.get(key)
            if holders is not None:
                holders.discard(subscription)
                if not holders:
                    del self._by_key[key]

    def wanted_keys(self) -> Container[Hashable] | None:
        """The keys some subscription follows (a live view); None when one follows every key."""
        return None if self._unkeyed else self._by_key.keys()

    def route(
        self, items: Sequence[T], key: Callable[[T], Hashable]
    ) -> list[tuple[S, Sequence[T]]]:
        """Each subscription that may want some of `items`, with those items in their order."""
        routed: dict[S, list[T]] = {}
        if self._by_key:
            by_key = self._by_key
            for item in items:
                holders = by_key.get(key(item))
                if holders:
                    for subscription in holders:
                        routed.setdefault(subscription, []).append(item)
        pairs: list[tuple[S, Sequence[T]]] = [(each, items) for each in self._unkeyed]
        pairs.extend(routed.items())
        return pairs
