"""Runs each service as its own process; a crashed child is restarted with backoff and logged."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

SERVICES = ("collector", "bars", "analytics", "gateway")


def available_services() -> list[str]:
    """The services whose packages are installed (each runs as `python -m tickmesh.<name>`)."""
    return [name for name in SERVICES if importlib.util.find_spec(f"tickmesh.{name}") is not None]


@dataclass
class RestartPolicy:
    """Exponential backoff between restarts; reset after a child stayed up long enough."""

    initial_seconds: float = 0.5
    max_seconds: float = 30.0
    healthy_after_seconds: float = 30.0

    def delay(self, consecutive_failures: int) -> float:
        """Seconds to wait before restart number `consecutive_failures`."""
        exponent = max(consecutive_failures - 1, 0)
        return float(min(self.max_seconds, self.initial_seconds * 2.0**exponent))


class Supervisor:
    """Start, watch and stop a set of child processes."""

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        environment: Mapping[str, str],
        policy: RestartPolicy | None = None,
        stop_grace_seconds: float = 10.0,
        child_environments: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._commands = dict(commands)
        self._environment = {**os.environ, **environment}
        # Settings of one child on top of the shared ones (e.g. a shard's index and ports).
        self._child_environments = {k: dict(v) for k, v in (child_environments or {}).items()}
        self._policy = policy or RestartPolicy()
        self._grace = stop_grace_seconds
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self.restarts: dict[str, int] = dict.fromkeys(commands, 0)

    async def run(self) -> None:
        """Supervise every child until stop() is called, then stop them all."""
        watchers = [asyncio.create_task(self._watch(name)) for name in self._commands]
        await self._stopping.wait()
        await self._terminate_all()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    def stop(self) -> None:
        """Ask run() to stop the children and return."""
        self._stopping.set()

    async def _watch(self, name: str) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *self._commands[name],
                env={**self._environment, **self._child_environments.get(name, {})},
            )
            self._children[name] = process
            log.info("started %s (pid %d)", name, process.pid)
            code = await process.wait()
            if self._stopping.is_set():
                return
            failures = (
                1
                if time.monotonic() - started > self._policy.healthy_after_seconds
                else failures + 1
            )
            delay = self._policy.delay(failures)
            self.restarts[name] += 1
            log.warning("%s exited with %s; restarting in %.1fs", name, code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def _terminate_all(self) -> None:
        running = [p for p in self._children.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), timeout=self._grace)
            except TimeoutError:
                log.warning("pid %d did not drain in %.0fs; killing it", process.pid, self._grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def service_command(name: str) -> list[str]:
    """The command line that runs one service in this Python environment."""
    return [sys.executable, "-m", f"tickmesh.{name}"]
