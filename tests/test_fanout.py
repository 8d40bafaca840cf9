"""The shared bounded fan-out: order, filtering, overflow and the interrupt hook."""

from __future__ import annotations

import asyncio

import pytest

from tickmesh.core.fanout import BoundedSubscription, Fanout, SubscriberOverflowError


async def test_subscription_takes_wanted_items_in_order() -> None:
    subscription = BoundedSubscription[int](lambda item: item % 2 == 0, backlog_limit=10)
    subscription.offer([1, 2, 3, 4])
    subscription.offer([6])
    assert await subscription.next_items() == [2, 4, 6]


async def test_subscription_waits_until_items_arrive() -> None:
    subscription = BoundedSubscription[int](lambda item: True, backlog_limit=10)
    waiting = asyncio.create_task(subscription.next_items())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    subscription.offer([7])
    assert await asyncio.wait_for(waiting, 1) == [7]


async def test_overflow_calls_hook_once_and_ends_the_subscriber() -> None:
    interrupted: list[bool] = []
    subscription = BoundedSubscription[int](lambda item: True, backlog_limit=3)
    subscription.on_overflow = lambda: interrupted.append(True)
    subscription.offer(range(5))
    subscription.offer(range(5))
    assert interrupted == [True]
    with pytest.raises(SubscriberOverflowError, match="more than 3 updates behind"):
        await subscription.next_items()


def test_fanout_registers_and_forgets_subscriptions() -> None:
    fanout: Fanout[BoundedSubscription[int]] = Fanout()
    first = fanout.add(BoundedSubscription[int](lambda item: True, 1))
    fanout.add(BoundedSubscription[int](lambda item: True, 1))
    fanout.discard(first)
    assert len(fanout) == 1
    assert first not in list(fanout)


def test_route_gives_keyed_subscriptions_only_their_items_in_order() -> None:
    fanout: Fanout[BoundedSubscription[tuple[str, int]]] = Fanout()
    offered: dict[str, list[tuple[str, int]]] = {"a": [], "ab": [], "all": []}

    def recorder(name: str) -> BoundedSubscription[tuple[str, int]]:
        def wants(item: tuple[str, int]) -> bool:
            offered[name].append(item)  # wants() sees exactly what the subscription is offered
            return True

        return BoundedSubscription(wants, 100)

    a = fanout.add(recorder("a"), ["a"])
    ab = fanout.add(recorder("ab"), ["a", "b"])
    every = fanout.add(recorder("all"))
    items = [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("b", 5)]
    routed = dict(fanout.route(items, lambda item: item[0]))
    assert set(routed) == {a, ab, every}
    for subscription, wanted in routed.items():
        subscription.offer(wanted)
    assert offered == {
        "a": [("a", 1), ("a", 4)],
        "ab": [("a", 1), ("b", 2), ("a", 4), ("b", 5)],
        "all": items,
    }
    fanout.discard(ab)
    assert set(dict(fanout.route(items, lambda item: item[0]))) == {a, every}
    fanout.discard(a)
    assert [s for s, _ in fanout.route(items, lambda item: item[0])] == [every]


def test_route_with_thousands_of_keyed_subscriptions_skips_the_others() -> None:
    # A gateway's stream per instrument of a whole market: a publish of one instrument's item
    # must reach its subscription alone, not be tested by all 2,000 filters.
    fanout: Fanout[BoundedSubscription[int]] = Fanout()
    calls = [0]

    def wants(item: int) -> bool:
        calls[0] += 1
        return True

    subscriptions = [fanout.add(BoundedSubscription(wants, 10), [key]) for key in range(2000)]
    routed = fanout.route([7, 1999], lambda item: item)
    for subscription, wanted in routed:
        subscription.offer(wanted)
    assert calls[0] == 2
    assert {s for s, _ in routed} == {subscriptions[7], subscriptions[1999]}
