"""A figure a benchmark measured, and the one table `make bench` prints."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure next to the goal an issue set for it."""

    name: str
    value: float
    unit: str
    goal: str = ""


def print_table(figures: list[Figure]) -> None:
    """Print the figures as an aligned table on stdout."""
    if not figures:
        return
    width = max(len(f.name) for f in figures)
    sys.stdout.write(f"\n{'figure'.ljust(width)}  {'measured':>16}  goal\n")
    for figure in figures:
        measured = f"{figure.value:,.1f} {figure.unit}"
        sys.stdout.write(f"{figure.name.ljust(width)}  {measured:>16}  {figure.goal}\n")
