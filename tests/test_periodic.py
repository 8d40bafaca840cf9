"""A periodic task keeps its rounds through a failing one and ends when stopped."""

from __future__ import annotations

import asyncio
import time

import pytest

from tickmesh.core.periodic import PeriodicTask


async def test_a_failing_round_is_logged_and_the_next_comes_at_its_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []

    async def action() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("the database is away")

    task = PeriodicTask("housekeeping", action, interval_seconds=0.02)
    task.start()
    await asyncio.sleep(0.15)
    await task.stop()
    assert len(rounds) >= 3
    assert "housekeeping failed" in caplog.text
    stopped_at = len(rounds)
    await asyncio.sleep(0.06)
    assert len(rounds) == stopped_at


async def test_delay_first_waits_one_interval_before_the_first_round() -> None:
    rounds: list[float] = []
    task = PeriodicTask("later", lambda: rounds.append(1.0), 0.1, delay_first=True)
    task.start()
    await asyncio.sleep(0.05)
    assert rounds == []
    await asyncio.sleep(0.1)
    await task.stop()
    assert rounds == [1.0]


async def test_rounds_at_an_offset_run_that_far_into_each_interval() -> None:
    at: list[float] = []
    task = PeriodicTask("aligned", lambda: at.append(time.time()), 0.2, True, at_offset_seconds=0.1)
    task.start()
    await asyncio.sleep(0.65)
    await task.stop()
    assert len(at) >= 2
    for moment in at:
        late = (moment - 0.1) % 0.2  # how far past 0.1 s into its period it ran
        assert min(late, 0.2 - late) < 0.05, moment % 0.2
