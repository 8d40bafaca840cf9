"""Ends WebSocket pushes stuck in a send: one sweep for every client instead of a timer per send.

With thousands of clients a push round is thousands of sends; arming and cancelling a timeout
around each one cost as much as the sends. A stuck send is rare, so it is found by a sweep
(twice a second while anything is being sent) that cancels the pushing task; the connection
then closes the client as too slow. A send is thus cut off within its timeout plus one period.
"""

from __future__ import annotations

import asyncio
import contextlib

_PERIOD_SECONDS = 0.5


class SendWatchdog:
    """Deadlines of the sends in progress, by the task sending."""

    def __init__(self, period_seconds: float = _PERIOD_SECONDS) -> None:
        self._period = period_seconds
        self._deadlines: dict[asyncio.Task[object], float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.expired = 0

    def sending(self, task: asyncio.Task[object], timeout_seconds: float) -> None:
        """`task` starts a send that must finish within `timeout_seconds`."""
        loop = asyncio.get_running_loop()
        self._deadlines[task] = loop.time() + timeout_seconds
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="ws-send-watchdog")

    def sent(self, task: asyncio.Task[object]) -> None:
        """`task`'s send finished."""
        self._deadlines.pop(task, None)

    async def close(self) -> None:
        """Stop sweeping (at shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._deadlines:
                await asyncio.sleep(self._period)
                now = loop.time()
                for task, deadline in list(self._deadlines.items()):
                    if now > deadline:
                        del self._deadlines[task]
                        self.expired += 1
                        task.cancel()
        finally:
            self._sweeper = None
