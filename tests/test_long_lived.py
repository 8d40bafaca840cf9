"""The freezer keeps long-lived objects out of full collections and still frees what dies."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.mesh_processes import ServiceProcess
from tickmesh.core.long_lived import BurstPause, LongLivedFreezer, collection_paused


class _Bar:
    """A slotted object like a retained bar: tracked by the collector."""

    __slots__ = ("__weakref__", "close")

    def __init__(self, close: int) -> None:
        self.close = close


class _Node:
    """An object that can be part of a reference cycle."""

    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    # The test process must not keep its tests' objects frozen (their cycles would leak).
    gc.unfreeze()
    yield
    gc.unfreeze()


def _sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_survivors_are_frozen_and_still_freed_when_their_last_reference_goes() -> None:
    registry = CollectorRegistry()
    freezer = LongLivedFreezer(registry)
    bars = [_Bar(i) for i in range(20_000)]
    freezer.freeze_now()
    frozen = gc.get_freeze_count()
    assert frozen >= 20_000
    assert _sample(registry, "tickmesh_gc_frozen_objects") == frozen
    assert _sample(registry, "tickmesh_gc_freeze_seconds_count") == 1
    # The list holding them is in no generation a collection scans any more.
    assert gc.get_referrers(bars[0]) == []
    last = weakref.ref(bars[-1])
    del bars  # bars pruned out of the revision window
    assert last() is None
    assert gc.get_freeze_count() <= frozen - 20_000


def test_cyclic_garbage_made_before_a_freeze_is_collected_not_frozen() -> None:
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    LongLivedFreezer(CollectorRegistry()).freeze_now()
    assert gone() is None


async def test_no_collection_runs_while_paused_by_any_task_and_it_resumes_after_the_last() -> None:
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    entered = asyncio.Event()
    leave = asyncio.Event()

    async def burst() -> None:
        with collection_paused():
            entered.set()
            await leave.wait()

    gc.callbacks.append(count)
    try:
        with collection_paused():
            other = asyncio.create_task(burst())
            await entered.wait()
            cycles = [_Node() for _ in range(5_000)]  # far past the young generation's threshold
        # The other task is still inside: no collection yet.
        cycles += [_Node() for _ in range(5_000)]
        assert collections == []
        assert not gc.isenabled()
        leave.set()
        await other
        assert gc.isenabled()
        cycles += [_Node() for _ in range(5_000)]
        assert collections
    finally:
        gc.callbacks.remove(count)
    # Refcounting freed what died inside as ever; a cycle made inside is collected after.
    first, second = _Node(), _Node()
    with collection_paused():
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        assert gone() is not None
    gc.collect()
    assert gone() is None
    assert cycles


def test_a_burst_pauses_collection_until_its_queue_empties_or_it_runs_too_long() -> None:
    now = [0.0]
    burst = BurstPause(max_seconds=2.0, clock=lambda: now[0])
    burst.follow(True)  # work queued: a burst starts
    assert not gc.isenabled()
    now[0] = 1.5
    burst.follow(True)
    assert not gc.isenabled()
    burst.follow(False)  # the queue emptied: the burst is over
    assert gc.isenabled()
    burst.follow(True)
    now[0] = 4.0  # a catch-up far longer than a burst gets its collections back ...
    burst.follow(True)
    assert gc.isenabled()
    now[0] = 4.1
    burst.follow(True)  # ... until the queue has been empty once
    assert gc.isenabled()
    burst.follow(False)
    burst.follow(True)
    assert not gc.isenabled()
    burst.end()
    assert gc.isenabled()
    burst.end()  # once only
    assert gc.isenabled()


async def test_freezes_at_start_and_every_interval_until_stopped() -> None:
    registry = CollectorRegistry()
    freezer = LongLivedFreezer(registry, interval_seconds=0.05)
    freezer.start()
    assert _sample(registry, "tickmesh_gc_freeze_seconds_count") == 1
    await asyncio.sleep(0.3)
    await freezer.stop()
    rounds = _sample(registry, "tickmesh_gc_freeze_seconds_count")
    assert rounds >= 3
    await asyncio.sleep(0.15)
    assert _sample(registry, "tickmesh_gc_freeze_seconds_count") == rounds


async def test_bar_and_analytics_services_freeze_what_they_hold_at_start(
    bars: ServiceProcess, analytics: ServiceProcess
) -> None:
    # What each restored and imported at start. For a whole market the bar service's retained
    # bars are 4 M objects and analytics' warm streams 2 M, each scanned by every full
    # collection with the event loop stopped (bench_gc_pause).
    for process in (bars, analytics):
        assert await process.metric("tickmesh_gc_frozen_objects") > 10_000, process.service
        assert await process.metric("tickmesh_gc_freeze_seconds_count") >= 1, process.service
