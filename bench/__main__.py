"""`python -m bench`: run every benchmark in bench/ in turn and print one table of figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

import bench
from bench.report import Figure, print_table


def main() -> None:
    """Import each bench_* module, call its main(), collect the figures it returns."""
    figures: list[Figure] = []
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(bench.__file__).parent)]))
    for name in names:
        if not name.startswith("bench_"):
            continue
        module = importlib.import_module(f"bench.{name}")
        sys.stdout.write(f"\n== {name}\n")
        started = time.perf_counter()
        result = module.main()
        if isinstance(result, list):
            figures.extend(f for f in result if isinstance(f, Figure))
        sys.stdout.write(f"({time.perf_counter() - started:.1f}s)\n")
    print_table(figures)


if __name__ == "__main__":
    main()
