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
