"""`tickmesh export`: bars, indicators and features of a range to a Parquet file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, cast, get_args

import typer

from tickmesh.datasets import DatasetRequest, DatasetRequestError, open_dataset, parse_request
from tickmesh.datasets.parquet import COMPRESSION, Compression
from tickmesh.datasets.reader import (
    DEFAULT_CHUNK_ROWS,
    DatasetRangeError,
    HistoryUnavailableError,
)


async def _export(
    database_url: str,
    request: DatasetRequest,
    out: Path,
    chunk_rows: int,
    connections: int,
    progress: bool,
    compression: Compression,
) -> tuple[int, float]:
    import time

    import asyncpg
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from tickmesh.datasets.parquet import write_parquet

    started = time.perf_counter()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=connections)
    try:
        async with open_dataset(
            pool, request, chunk_rows=chunk_rows, connections=connections
        ) as reader:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                disable=not progress,
            ) as bar:
                task = bar.add_task(f"{out.name} ({request.mode})", total=reader.total_rows)
                rows = await write_parquet(reader, out, lambda n: bar.advance(task, n), compression)
    finally:
        await pool.close()
    return rows, time.perf_counter() - started


def export_dataset(
    instrument: Annotated[
        list[str],
        typer.Option(help="An instrument as <venue>:<symbol>, e.g. binance_usdm:BTCUSDT (repeat)."),
    ],
    timeframe: Annotated[list[str], typer.Option(help="A timeframe, e.g. 1m (repeat).")],
    start: Annotated[
        str, typer.Option("--from", help="First bar open time, ISO 8601 (UTC when no offset).")
    ],
    end: Annotated[str, typer.Option("--to", help="End of the range (exclusive), ISO 8601.")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="The Parquet file to write.")],
    as_of: Annotated[
        bool,
        typer.Option(
            "--as-of",
            help="Point in time per row: each row as known when its bar first became final "
            "(no look-ahead), instead of the latest values.",
        ),
    ] = False,
    indicators: Annotated[bool, typer.Option(help="Include the ind_* columns.")] = True,
    features: Annotated[bool, typer.Option(help="Include the feat_* columns.")] = True,
    database_url: Annotated[
        str,
        typer.Option(envvar="TICKMESH_DATABASE_URL", help="The mesh's PostgreSQL database."),
    ] = "postgresql://postgres@127.0.0.1:5432/tickmesh",
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows read per query: bounds the memory used.")
    ] = DEFAULT_CHUNK_ROWS,
    connections: Annotated[
        int,
        typer.Option(
            min=1,
            max=3,
            help="Database connections reading bars, indicators and features at once "
            "(one snapshot).",
        ),
    ] = 3,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    compression: Annotated[
        str,
        typer.Option(
            help="Parquet compression: snappy (fastest, every reader has it), zstd (about a "
            "quarter smaller, twice the writing time), lz4 or none."
        ),
    ] = COMPRESSION,
) -> None:
    """Export bars with their indicators and features to Parquet (schema: README "Datasets")."""
    import asyncpg
    from rich.console import Console

    console = Console(stderr=True)
    if out.suffix != ".parquet":
        raise typer.BadParameter(f"{out} must end in .parquet", param_hint="--out")
    if compression not in get_args(Compression):
        choices = ", ".join(get_args(Compression))
        raise typer.BadParameter(
            f"{compression!r} is not one of {choices}", param_hint="--compression"
        )
    try:
        request = parse_request(
            instrument, timeframe, start, end, as_of=as_of, indicators=indicators, features=features
        )
    except DatasetRequestError as error:
        raise typer.BadParameter(str(error)) from None
    try:
        rows, seconds = asyncio.run(
            _export(
                database_url,
                request,
                out,
                chunk_rows,
                connections,
                progress,
                cast(Compression, compression),
            )
        )
    except (DatasetRangeError, HistoryUnavailableError, OSError, asyncpg.PostgresError) as error:
        console.print(f"[red]export failed:[/red] {error}")
        raise typer.Exit(1) from None
    rate = rows / seconds if seconds > 0 else 0.0
    console.print(
        f"{rows} rows ({request.mode}) written to {out} in {seconds:.1f} s ({rate:,.0f} rows/s)",
        markup=False,
        highlight=False,
    )
