"""A background task that runs an action every interval until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicTask:
    """Runs `action` (a function or a coroutine function) every `interval_seconds`.

    A round that raises is logged and the next one comes at its time: housekeeping must not
    stop a service. The first round runs at start, or after one interval with `delay_first`.
    With `at_offset_seconds`, rounds run when the wall clock is that far into an interval
    (60 s and 30: half past each minute), away from the minute closes' bursts.
    """

    def __init__(
        self,
        name: str,
        action: Callable[[], object],
        interval_seconds: float,
        delay_first: bool = False,
        at_offset_seconds: float | None = None,
    ) -> None:
        self._name = name
        self._offset = at_offset_seconds
        self._action = action
        self._interval = interval_seconds
        self._delay_first = delay_first
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in the background until stop()."""
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _delay(self) -> float:
        if self._offset is None:
            return self._interval
        # Never 0: a round that ends within its own second must not run again at once.
        return (self._offset - time.time()) % self._interval or self._interval

    async def _loop(self) -> None:
        if self._delay_first:
            await asyncio.sleep(self._delay())
        while True:
            try:
                result = self._action()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("%s failed", self._name)
            await asyncio.sleep(self._delay())
