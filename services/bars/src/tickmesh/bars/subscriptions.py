"""Fan-out of bars to `BarService.Subscribe` streams, each with a bounded backlog.

Final bars and revisions queue in order and are never dropped; forming bars are coalesced
to the latest per instrument and timeframe. A subscriber whose backlog of finals passes the
bound is ended (the servicer answers RESOURCE_EXHAUSTED) and resumes from its change id.

The subscriptions that take forming bars are indexed apart: the engine names, and the pipeline
makes into messages, only the forming bars of instruments one of them follows. Analytics takes
finals only, and a gateway follows the instruments its clients watch; making a whole market's
forming messages for nobody cost about a third of a core.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass

from tickmesh.core.fanout import BoundedSubscription, Fanout, SubscriberOverflowError
from tickmesh.v2 import market_pb2

__all__ = ["BarFilter", "BarHub", "SubscriberOverflowError", "Subscription"]

BarKey = tuple[int, str, int]  # exchange enum, symbol, timeframe enum
InstrumentKey = tuple[int, str]  # exchange enum, symbol


@dataclass(frozen=True)
class BarFilter:
    """Which bars a subscriber wants; empty sets mean everything."""

    instruments: frozenset[InstrumentKey] = frozenset()
    timeframes: frozenset[int] = frozenset()
    include_forming: bool = False

    def wants(self, bar: market_pb2.Bar) -> bool:
        """True when `bar` passes the instrument and timeframe filters."""
        return (not self.instruments or (bar.exchange, bar.symbol) in self.instruments) and (
            not self.timeframes or bar.timeframe in self.timeframes
        )


class Subscription(BoundedSubscription[market_pb2.Bar]):
    """One subscriber: finals in order, forming bars coalesced after them."""

    def __init__(self, bar_filter: BarFilter, backlog_limit: int) -> None:
        super().__init__(bar_filter.wants, backlog_limit)
        self.bar_filter = bar_filter
        self.forming: dict[BarKey, market_pb2.Bar] = {}

    def on_queued(self, item: market_pb2.Bar) -> None:
        """A final supersedes a forming version of the same bar still waiting."""
        self.forming.pop((item.exchange, item.symbol, item.timeframe), None)

    def offer_forming(self, bars: Iterable[market_pb2.Bar]) -> None:
        """Keep only the latest forming bar per instrument and timeframe."""
        if not self.bar_filter.include_forming:
            return
        for bar in bars:
            if self.bar_filter.wants(bar):
                self.forming[(bar.exchange, bar.symbol, bar.timeframe)] = bar
        if self.forming:
            self.wake()

    def has_extra(self) -> bool:
        """Forming bars wait outside the ordered queue."""
        return bool(self.forming)

    def take_extra(self, taken: list[market_pb2.Bar]) -> None:
        """Forming bars go after the finals."""
        taken.extend(self.forming.values())
        self.forming.clear()


def _instrument_key(bar: market_pb2.Bar) -> InstrumentKey:
    return (bar.exchange, bar.symbol)


class BarHub:
    """Every open bar subscription of this process."""

    def __init__(self, backlog_limit: int) -> None:
        self._backlog_limit = backlog_limit
        self._subscriptions: Fanout[Subscription] = Fanout()
        self._forming: Fanout[Subscription] = Fanout()  # those that include forming bars
        # The greatest change id published (or stored before this process started): a new
        # subscription gets every final after it.
        self.newest_change_id = 0

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return len(self._subscriptions)

    def subscribe(self, bar_filter: BarFilter) -> Subscription:
        """Open a subscription; it receives every bar published from now on."""
        subscription = Subscription(bar_filter, self._backlog_limit)
        if bar_filter.include_forming:
            self._forming.add(subscription, bar_filter.instruments)
        # Keyed by instrument, so a publish reaches only the streams following its instruments.
        return self._subscriptions.add(subscription, bar_filter.instruments)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Close a subscription."""
        self._subscriptions.discard(subscription)
        self._forming.discard(subscription)

    def forming_wanted(self) -> Container[object] | None:
        """The instruments whose forming bars some subscriber takes; None for every instrument."""
        return self._forming.wanted_keys()

    def publish_finals(self, bars: list[market_pb2.Bar]) -> None:
        """Hand persisted final bars and revisions, in change-id order, to every subscriber."""
        if bars:
            self.newest_change_id = max(self.newest_change_id, bars[-1].change_id)
            for subscription, wanted in self._subscriptions.route(bars, _instrument_key):
                subscription.offer(wanted)

    def publish_forming(self, bars: list[market_pb2.Bar]) -> None:
        """Hand forming bars to the subscribers that asked for them."""
        if bars:
            for subscription, wanted in self._forming.route(bars, _instrument_key):
                subscription.offer_forming(wanted)
