"""`python -m bench`: run every benchmark in bench/ in turn and print one table of figures.

Each benchmark runs in a fresh interpreter of its own: run in one process, the later ones
inherited the heap, threads and garbage of the earlier ones, and measured that (the WebSocket
push lag was several times its figure run alone).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import pkgutil
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import bench
from bench.report import Figure, print_table


def _run_one(name: str, sink: Connection) -> None:
    """In the child: run bench.<name>.main() and send back the figures it returned."""
    result = importlib.import_module(f"bench.{name}").main()
    figures = [f for f in result if isinstance(f, Figure)] if isinstance(result, list) else []
    sink.send(figures)
    sink.close()


def _benchmark(name: str) -> list[Figure]:
    """One benchmark in a spawned interpreter; its figures (none if it failed)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_run_one, args=(name, sender), name=name)
    child.start()
    sender.close()
    figures: list[Figure] = []
    try:
        with contextlib.suppress(EOFError):  # it failed before sending: see its traceback
            figures = receiver.recv()
    finally:
        if child.is_alive():  # stopped early (SIGTERM, Ctrl-C): the child unwinds on SIGTERM
            child.terminate()
        child.join()
    if child.exitcode != 0:
        sys.stdout.write(f"{name} failed (exit status {child.exitcode})\n")
    return figures


def main() -> None:
    """Run each bench_* module's main() in its own process, collect the figures it returns."""
    figures: list[Figure] = []
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(bench.__file__).parent)]))
    for name in names:
        if not name.startswith("bench_"):
            continue
        sys.stdout.write(f"\n== {name}\n")
        sys.stdout.flush()
        started = time.perf_counter()
        figures.extend(_benchmark(name))
        sys.stdout.write(f"({time.perf_counter() - started:.1f}s)\n")
    print_table(figures)


if __name__ == "__main__":
    main()
