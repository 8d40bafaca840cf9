"""The supervisor restarts crashed children with backoff and stops the rest cleanly."""

from __future__ import annotations

import asyncio
import sys

from tickmesh.mesh.supervisor import RestartPolicy, Supervisor


def test_restart_policy_backs_off_exponentially_to_a_cap() -> None:
    policy = RestartPolicy(initial_seconds=0.5, max_seconds=4.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


async def test_supervisor_restarts_crashed_child_and_terminates_others() -> None:
    supervisor = Supervisor(
        {
            "crasher": [sys.executable, "-c", "import sys; sys.exit(3)"],
            "sleeper": [sys.executable, "-c", "import time; time.sleep(60)"],
        },
        environment={},
        policy=RestartPolicy(initial_seconds=0.05, max_seconds=0.1),
        stop_grace_seconds=5,
    )
    running = asyncio.create_task(supervisor.run())
    for _ in range(100):
        if supervisor.restarts["crasher"] >= 3:
            break
        await asyncio.sleep(0.1)
    supervisor.stop()
    await asyncio.wait_for(running, timeout=10)
    assert supervisor.restarts["crasher"] >= 3
    assert supervisor.restarts["sleeper"] == 0
