"""A date range of Binance's daily trade files into the bar service, day by day, resumable.

Each day is fetched (verified, cached under the state directory) and then imported through
`import_files`, whose resume state is keyed by the cached zip: a rerun skips the days already
acknowledged in full, and resumes a partial day after its last acknowledged trade id (the bar
service drops any trade id it already applied). Days go in time order, so the bar service
builds and finalises their bars, and analytics computes them, oldest first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress

from tickmesh.collector.binance_csv import CsvKind
from tickmesh.collector.binance_vision import (
    DEFAULT_BASE_URL,
    DailyFile,
    MissingDayError,
    VisionClient,
    VisionConfig,
    VisionError,
    days_between,
)
from tickmesh.collector.import_state import ImportState, file_key
from tickmesh.collector.importer import EXCHANGES, FileResult, import_files, import_progress
from tickmesh.core.tls import TlsMaterial


class DayStatus(enum.StrEnum):
    """What became of one day of the range."""

    IMPORTED = "imported"
    ALREADY_DONE = "already imported"
    MISSING = "missing"
    FAILED = "failed"
    NOT_REACHED = "not reached"


@dataclass(slots=True)
class DayResult:
    """One day of a range import: its status, the import's counts, or the error."""

    day: dt.date
    status: DayStatus
    file: FileResult | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """Which files: a market (spot or usdm), a symbol, a kind and the days, both ends included."""

    market: str
    symbol: str
    start: dt.date
    end: dt.date
    kind: CsvKind = CsvKind.TRADES

    def files(self) -> list[DailyFile]:
        """The daily files of the range, oldest first."""
        if self.market not in EXCHANGES:
            raise ValueError(f"market must be one of {sorted(EXCHANGES)}, not {self.market!r}")
        days = days_between(self.start, self.end)
        return [DailyFile(self.market, self.kind, self.symbol.upper(), day) for day in days]


@dataclass(frozen=True, slots=True)
class RangeOptions:
    """Where state and cache live, where files come from, and how the import runs."""

    state_dir: Path
    base_url: str = DEFAULT_BASE_URL
    attempts: int = 5
    backoff_max_s: float = 30.0
    chunk_rows: int = 5000
    max_trades: int | None = None
    show_progress: bool = True
    tls: TlsMaterial | None = None
    # The resume state file; default: import-state.json in the state directory.
    state_file: Path | None = None

    @property
    def state_path(self) -> Path:
        """The import's resume state (shared with file imports)."""
        return self.state_file or self.state_dir / "import-state.json"

    @property
    def cache_dir(self) -> Path:
        """Where verified daily files are kept."""
        return self.state_dir / "binance-vision"


async def import_range(
    request: RangeRequest,
    bars_address: str | Sequence[str],
    options: RangeOptions,
    console: Console | None = None,
) -> list[DayResult]:
    """Fetch and import every day of the range in order; a failed day does not stop the others."""
    files = request.files()
    config = VisionConfig(
        options.cache_dir,
        options.base_url,
        attempts=options.attempts,
        backoff_max_s=options.backoff_max_s,
    )
    progress = import_progress(console or Console(stderr=True), options.show_progress)
    remaining = options.max_trades
    results: list[DayResult] = []
    async with httpx.AsyncClient(follow_redirects=True) as http:
        client = VisionClient(config, http)
        prefetch: asyncio.Task[Path] | None = None
        try:
            with progress:
                for index, file in enumerate(files):
                    if remaining is not None and remaining <= 0:
                        results += [DayResult(f.day, DayStatus.NOT_REACHED) for f in files[index:]]
                        break
                    if prefetch is not None:
                        # Its outcome (a cached file, or the error) is had again by the fetch.
                        await asyncio.gather(prefetch, return_exceptions=True)
                    # The next day downloads while this one is imported: a pause between days
                    # lets the symbol's clock run on and finalise the next day's first minutes
                    # early (as flat bars, revised when their trades arrive).
                    following = files[index + 1] if index + 1 < len(files) else None
                    prefetch = (
                        None if following is None else asyncio.create_task(client.fetch(following))
                    )
                    day = await _import_day(
                        client, file, bars_address, options, remaining, progress
                    )
                    results.append(day)
                    if remaining is not None and day.file is not None:
                        remaining -= day.file.submitted + len(day.file.refused)
        finally:
            if prefetch is not None:
                prefetch.cancel()
                await asyncio.gather(prefetch, return_exceptions=True)
    return results


async def _import_day(
    client: VisionClient,
    file: DailyFile,
    bars_address: str | Sequence[str],
    options: RangeOptions,
    remaining: int | None,
    progress: Progress,
) -> DayResult:
    cached = client.cached(file)
    if ImportState.load(options.state_path).done(file_key(cached, file.member)):
        return DayResult(file.day, DayStatus.ALREADY_DONE)
    task = progress.add_task(f"fetch {file.name}", total=None, acked=0)

    def show(done: int, total: int | None) -> None:
        progress.update(task, completed=done, total=total)

    try:
        path = await client.fetch(file, show)
    except MissingDayError as error:
        return DayResult(file.day, DayStatus.MISSING, error=str(error))
    except (VisionError, httpx.HTTPError, OSError) as error:
        return DayResult(file.day, DayStatus.FAILED, error=f"{type(error).__name__}: {error}")
    finally:
        progress.remove_task(task)
    [result] = await import_files(
        [path],
        bars_address,
        state_path=options.state_path,
        exchange=EXCHANGES[file.market],
        symbol=file.symbol,
        kind=file.kind,
        chunk_rows=options.chunk_rows,
        max_trades=remaining,
        tls=options.tls,
        progress=progress,
    )
    return DayResult(file.day, DayStatus.IMPORTED, result)
