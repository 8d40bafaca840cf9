"""Benchmarks: each bench_*.py module has a main() that prints its figures.

SIGTERM (a `kill`, or `timeout` running out) unwinds a benchmark like Ctrl-C does, so the
embedded PostgreSQL and Redis it started and the services it spawned are stopped, not left
running after it.
"""

from __future__ import annotations

import signal
from types import FrameType


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)
