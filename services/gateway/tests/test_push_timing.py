"""The shared wake-up wheel and the send watchdog of WebSocket pushes."""

from __future__ import annotations

import asyncio

import pytest

from tickmesh.gateway.send_watchdog import SendWatchdog
from tickmesh.gateway.wake_wheel import WakeWheel


async def test_wheel_wakes_every_caller_of_a_slot_never_early() -> None:
    loop = asyncio.get_running_loop()
    wheel = WakeWheel(slot_seconds=0.02)
    woken: list[tuple[str, float]] = []
    due = loop.time() + 0.05
    for name in ("a", "b"):
        wheel.call_at(due, lambda name=name: woken.append((name, loop.time())))  # type: ignore[misc]
    wheel.call_at(due + 0.1, lambda: woken.append(("c", loop.time())))
    await asyncio.sleep(0.3)
    assert [name for name, _ in woken] == ["a", "b", "c"]
    assert all(at >= due - 0.002 for _, at in woken)  # loop timers may fire up to 1 ms early
    assert woken[2][1] >= due + 0.1 - 0.002


async def test_watchdog_cancels_only_a_send_past_its_deadline() -> None:
    watchdog = SendWatchdog(period_seconds=0.02)
    stuck = asyncio.Event()

    async def send(seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        watchdog.sending(task, 0.05)
        try:
            await asyncio.wait_for(stuck.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            watchdog.sent(task)

    quick = asyncio.create_task(send(0.01))
    slow = asyncio.create_task(send(5.0))
    await quick
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert watchdog.expired == 1
    await watchdog.close()
