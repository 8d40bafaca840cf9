"""`tickmesh import --from --to`: run a range import and print what became of each day."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from rich.console import Console

from tickmesh.collector.history_import import (
    DayResult,
    DayStatus,
    RangeOptions,
    RangeRequest,
    import_range,
)
from tickmesh.collector.import_summary import summary_lines
from tickmesh.collector.importer import EXCHANGES


def day_lines(request: RangeRequest, days: Sequence[DayResult]) -> list[str]:
    """One line per day that was not imported, then the import summary of each imported day."""
    lines: list[str] = []
    counts = {status: sum(1 for d in days if d.status is status) for status in DayStatus}
    lines.append(
        f"{request.symbol} ({request.market}) {request.start}..{request.end}: "
        + ", ".join(f"{count} {status.value}" for status, count in counts.items() if count)
    )
    for day in days:
        if day.error is not None:
            lines.append(f"  {day.day}: {day.status.value}: {day.error}")
    imported = [day.file for day in days if day.file is not None]
    lines += summary_lines(imported, EXCHANGES[request.market])
    return lines


def exit_code(days: Sequence[DayResult]) -> int:
    """1 when a day failed (checksum, network) or no day was there at all, else 0.

    A missing day alone is not a failure: a symbol listed mid-range has no files before.
    """
    if any(day.status is DayStatus.FAILED for day in days):
        return 1
    if days and all(day.status is DayStatus.MISSING for day in days):
        return 1
    return 0


def run_range(
    request: RangeRequest, shards: Sequence[str], options: RangeOptions, console: Console
) -> int:
    """Import the range, print the per-day summary and return the exit code."""
    try:
        days = asyncio.run(import_range(request, shards, options, console))
    except (ConnectionError, ValueError) as error:
        console.print(f"[red]import failed:[/red] {error}")
        return 1
    for line in day_lines(request, days):
        console.print(line, markup=False, highlight=False)
    return exit_code(days)
