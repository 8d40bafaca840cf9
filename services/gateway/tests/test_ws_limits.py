"""The WebSocket route's counting limits: slots per key and the per-socket message bucket."""

from __future__ import annotations

from tickmesh.gateway.ws_limits import MessageBucket, Slots


def test_slots_refuse_past_the_limit_and_free_on_give_back() -> None:
    slots: Slots[str] = Slots(2)
    assert slots.take("10.0.0.1")
    assert slots.take("10.0.0.1")
    assert not slots.take("10.0.0.1")
    assert slots.take("10.0.0.2")  # another key has its own slots
    slots.give_back("10.0.0.1")
    assert slots.take("10.0.0.1")


def test_slots_forget_keys_with_nothing_held() -> None:
    slots: Slots[int] = Slots(1)
    assert slots.take(7)
    slots.give_back(7)
    assert slots.held(7) == 0
    assert not slots._held  # an address seen once does not stay in memory


def test_message_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = MessageBucket(per_second=2.0, burst=3)
    start = bucket._at
    assert all(bucket.take(start) for _ in range(3))
    assert not bucket.take(start)
    assert bucket.take(start + 0.5)  # one token back after half a second at 2/s
    assert not bucket.take(start + 0.5)
    # Idle time refills up to the burst, no more.
    assert sum(bucket.take(start + 100 + i * 0.001) for i in range(10)) == 3
