"""`tickmesh import`: Binance public trade CSVs into the bar service, as the `importer` role."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer

from tickmesh.core.settings import SettingsError
from tickmesh.core.sharding import parse_shard_addresses
from tickmesh.core.tls import TlsMaterial
from tickmesh.mesh.certs import insecure_requested, role_tls_dir
from tickmesh.mesh.range_import import run_range


def _importer_tls(tls_dir: Path | None) -> TlsMaterial | None:
    """The importer's certificate: --tls-dir, else the one `tickmesh run` made in its state dir.

    None (plaintext) only when TICKMESH_GRPC_INSECURE asks for it, as for the services.
    """
    if insecure_requested(os.environ):
        return None
    if tls_dir is None:
        tls_dir = role_tls_dir(Path(os.environ.get("TICKMESH_STATE_DIR", ".state")), "importer")
    return TlsMaterial.load(tls_dir, "--tls-dir/TICKMESH_IMPORT_TLS_DIR")


def import_trades(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="Binance trades or aggTrades CSV files, or zips (or give --from/--to).",
        ),
    ] = None,
    bars_address: Annotated[
        str, typer.Option(envvar="TICKMESH_BARS_ADDRESS", help="The bar service's gRPC address.")
    ] = "127.0.0.1:50052",
    bars_addresses: Annotated[
        str | None,
        typer.Option(
            envvar="TICKMESH_BARS_ADDRESSES",
            help="Every bar shard's address in shard order, comma-separated: each file goes "
            "to the shard owning its symbol (replaces --bars-address).",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="Resume state file (default: $TICKMESH_STATE_DIR/import-state.json)."),
    ] = None,
    exchange: Annotated[str, typer.Option(help="spot or usdm.")] = "spot",
    symbol: Annotated[
        str | None, typer.Option(help="Symbol (default: from each file name).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="trades or aggTrades (default: detected).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many new trades (resumable).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    start: Annotated[
        dt.datetime | None,
        typer.Option(
            "--from",
            formats=["%Y-%m-%d"],
            help="First day (UTC) of a range to fetch from data.binance.vision (needs --symbol).",
        ),
    ] = None,
    end: Annotated[
        dt.datetime | None,
        typer.Option(
            "--to", formats=["%Y-%m-%d"], help="Last day of the range, included (default: --from)."
        ),
    ] = None,
    base_url: Annotated[
        str,
        typer.Option(
            envvar="TICKMESH_BINANCE_VISION_URL", help="Where the daily files are served."
        ),
    ] = "https://data.binance.vision",
    tls_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="TICKMESH_IMPORT_TLS_DIR",
            help="The importer's certificate (ca.crt, tls.crt, tls.key); default: "
            "$TICKMESH_STATE_DIR/tls/importer, made by `tickmesh run`.",
        ),
    ] = None,
) -> None:
    """Import Binance public trade CSVs into the bar service, resuming after what was acked."""
    from rich.console import Console

    from tickmesh.collector.binance_csv import CsvKind, ImportFileError
    from tickmesh.collector.history_import import RangeOptions, RangeRequest
    from tickmesh.collector.import_summary import summary_lines
    from tickmesh.collector.importer import EXCHANGES, import_files

    if exchange not in EXCHANGES:
        raise typer.BadParameter(f"--exchange must be one of {sorted(EXCHANGES)}")
    if kind is not None and kind not in {member.value for member in CsvKind}:
        raise typer.BadParameter(f"--kind must be one of {[member.value for member in CsvKind]}")
    try:
        shards = parse_shard_addresses(bars_addresses) if bars_addresses else (bars_address,)
    except ValueError as error:
        raise typer.BadParameter(f"--bars-addresses: {error}") from None
    console = Console(stderr=True)
    try:
        tls = _importer_tls(tls_dir)
    except SettingsError as error:
        console.print(f"[red]import failed:[/red] {error}")
        raise typer.Exit(2) from None
    if start is not None or end is not None:
        if files:
            raise typer.BadParameter("give files or --from/--to, not both")
        if start is None or symbol is None:
            raise typer.BadParameter("a range import needs --from and --symbol")
        request = RangeRequest(
            exchange,
            symbol.upper(),
            start.date(),
            (end or start).date(),
            CsvKind(kind) if kind else CsvKind.TRADES,
        )
        options = RangeOptions(
            Path(os.environ.get("TICKMESH_STATE_DIR", ".state")),
            base_url,
            max_trades=limit,
            show_progress=progress,
            tls=tls,
            state_file=state,
        )
        raise typer.Exit(run_range(request, shards, options, console))
    if not files:
        raise typer.BadParameter("give files to import, or a range with --from/--to")
    try:
        results = asyncio.run(
            import_files(
                files,
                shards,
                state_path=state,
                exchange=EXCHANGES[exchange],
                symbol=symbol.upper() if symbol else None,
                kind=CsvKind(kind) if kind else None,
                max_trades=limit,
                show_progress=progress,
                console=console,
                tls=tls,
            )
        )
    except (ConnectionError, ImportFileError, ValueError) as error:
        console.print(f"[red]import failed:[/red] {error}")
        raise typer.Exit(1) from error
    for line in summary_lines(results, EXCHANGES[exchange]):
        console.print(line, markup=False, highlight=False)
