"""Fan-out of committed analytics updates to `AnalyticsService.Subscribe` streams, each with a bounded backlog.

Updates are offered only after their rows are committed, so a subscriber never sees
something GetIndicators could not return. A subscriber whose backlog passes the bound is
ended (RESOURCE_EXHAUSTED) and may resume from the open time it last received.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickmesh.analytics.history import EncodedUpdate
from tickmesh.core.fanout import BoundedSubscription, Fanout, SubscriberOverflowError
from tickmesh.core.instruments import InstrumentId

__all__ = ["AnalyticsHub", "SubscriberOverflowError", "UpdateFilter"]


@dataclass(frozen=True)
class UpdateFilter:
    """Which updates a subscriber wants; empty sets mean everything."""

    instruments: frozenset[InstrumentId] = frozenset()
    timeframes: frozenset[int] = frozenset()

    def wants(self, update: EncodedUpdate) -> bool:
        """True when an update passes the instrument and timeframe filters."""
        return (not self.instruments or update.instrument in self.instruments) and (
            not self.timeframes or update.timeframe in self.timeframes
        )


def _instrument(update: EncodedUpdate) -> InstrumentId:
    return update.instrument


class AnalyticsHub:
    """Every open analytics subscription of this process."""

    def __init__(self, backlog_limit: int) -> None:
        self._backlog_limit = backlog_limit
        self._subscriptions: Fanout[BoundedSubscription[EncodedUpdate]] = Fanout()

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return len(self._subscriptions)

    def subscribe(self, update_filter: UpdateFilter) -> BoundedSubscription[EncodedUpdate]:
        """Open a subscription; it receives every update published from now on."""
        subscription = BoundedSubscription(update_filter.wants, self._backlog_limit)
        # Keyed by instrument, so a publish reaches only the streams following its instruments.
        return self._subscriptions.add(subscription, update_filter.instruments)

    def unsubscribe(self, subscription: BoundedSubscription[EncodedUpdate]) -> None:
        """Close a subscription."""
        self._subscriptions.discard(subscription)

    def publish(self, updates: list[EncodedUpdate]) -> None:
        """Hand committed updates, in order, to every subscriber."""
        if updates:
            for subscription, wanted in self._subscriptions.route(updates, _instrument):
                subscription.offer(wanted)
