"""The `tickmesh` command: run the whole mesh, one service, migrations, and the tools."""

from __future__ import annotations

import asyncio
import logging
import os
import runpy
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from tickmesh.core.logs import configure_logging
from tickmesh.core.sharding import parse_shard_addresses
from tickmesh.mesh.demo_symbols import register_symbols
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.mesh.shard_layout import Child, layout
from tickmesh.mesh.supervisor import Supervisor, available_services

app = typer.Typer(
    help="tickmesh: a real-time market data platform as a gRPC mesh.", no_args_is_help=True
)
log = logging.getLogger("tickmesh.mesh")
FRONTEND_DIST = Path(__file__).resolve().parents[3] / "frontend" / "dist"

StateDir = Annotated[
    Path,
    typer.Option(
        envvar="TICKMESH_STATE_DIR", help="Where embedded PostgreSQL and Redis keep their data."
    ),
]

BarShards = Annotated[
    int,
    typer.Option(
        min=1,
        help="Run a collector and a bar service per shard (shard i on the usual ports + 100·i).",
    ),
]


def _shard_layout(services: list[str], bar_shards: int) -> tuple[list[Child], dict[str, str]]:
    try:
        return layout(services, bar_shards, os.environ)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _embedded_environment(servers: EmbeddedServers) -> dict[str, str]:
    """TICKMESH_DATABASE_URL / TICKMESH_REDIS_URL from the environment, or from embedded servers."""
    environment: dict[str, str] = {}
    database_url = os.environ.get("TICKMESH_DATABASE_URL")
    redis_url = os.environ.get("TICKMESH_REDIS_URL")
    environment["TICKMESH_DATABASE_URL"] = database_url or servers.start_postgres()
    environment["TICKMESH_REDIS_URL"] = redis_url or servers.start_redis()
    return environment


async def _supervise(
    supervisor: Supervisor, after_start: Callable[[], Awaitable[None]] | None = None
) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop)
    running = asyncio.create_task(supervisor.run())
    if after_start is not None:
        try:
            await after_start()
        except Exception as error:  # the mesh still runs; the user sees why the step failed
            log.error("demo set-up failed: %s", error)
    await running


def _dashboard_environment() -> dict[str, str]:
    """Serve the built dashboard from the gateway when it exists (make run builds it)."""
    if "TICKMESH_GATEWAY_STATIC_DIR" in os.environ or not (FRONTEND_DIST / "index.html").exists():
        return {}
    return {"TICKMESH_GATEWAY_STATIC_DIR": str(FRONTEND_DIST)}


@app.command()
def run(
    state_dir: StateDir = Path(".state"),
    services: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Run only these services.")
    ] = None,
    bar_shards: BarShards = 1,
) -> None:
    """Run the mesh: embedded PostgreSQL and Redis unless URLs are set, each service in its own process."""
    configure_logging("mesh", os.environ.get("TICKMESH_LOG_LEVEL", "INFO"))
    chosen = services or available_services()
    unknown = set(chosen) - set(available_services())
    if unknown:
        raise typer.BadParameter(f"unknown services: {', '.join(sorted(unknown))}")
    children, sharding = _shard_layout(chosen, bar_shards)
    with EmbeddedServers(state_dir) as servers:
        environment = _embedded_environment(servers) | _dashboard_environment() | sharding
        supervisor = Supervisor(
            {child.name: child.command for child in children},
            environment,
            child_environments={child.name: child.environment for child in children},
        )
        log.info("starting %s", ", ".join(child.name for child in children))
        asyncio.run(_supervise(supervisor))
    log.info("stopped")


@app.command()
def demo(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Binance trade CSV/zip or capture files to replay; none: a random walk."
        ),
    ] = None,
    state_dir: StateDir = Path(".state/demo"),
    symbols: Annotated[
        str, typer.Option(help="Symbols to register (and to random-walk when no file is given).")
    ] = "BTCUSDT,ETHUSDT",
    simulator_port: Annotated[
        int, typer.Option(envvar="TICKMESH_SIMULATOR_PORT", help="Port of the exchange simulator.")
    ] = 9400,
    bar_shards: BarShards = 1,
) -> None:
    """Run the whole mesh against the local exchange simulator: no internet needed."""
    configure_logging("mesh", os.environ.get("TICKMESH_LOG_LEVEL", "INFO"))
    children, sharding = _shard_layout(available_services(), bar_shards)
    wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    simulator = [
        sys.executable,
        "-m",
        "tickmesh.mesh.cli",
        "simulate",
        "--port",
        str(simulator_port),
    ]
    simulator += ["--symbols", ",".join(wanted), "--seed", "1", *[str(f) for f in files or []]]
    base = f"127.0.0.1:{simulator_port}"
    with EmbeddedServers(state_dir) as servers:
        environment = _embedded_environment(servers) | _dashboard_environment()
        environment |= {
            "TICKMESH_COLLECTOR_BINANCE_SPOT_STREAM_URL": f"ws://{base}",
            "TICKMESH_COLLECTOR_BINANCE_SPOT_API_URL": f"http://{base}/api",
            "TICKMESH_COLLECTOR_BINANCE_USDM_STREAM_URL": f"ws://{base}/usdm",
            "TICKMESH_COLLECTOR_BINANCE_USDM_API_URL": f"http://{base}/fapi",
        }
        environment |= sharding
        commands = {"simulator": simulator} | {child.name: child.command for child in children}
        supervisor = Supervisor(
            commands,
            environment,
            child_environments={child.name: child.environment for child in children},
        )
        log.info("starting the demo: simulator on %s, symbols %s", base, ", ".join(wanted))
        asyncio.run(_supervise(supervisor, lambda: register_symbols(wanted)))
    log.info("stopped")


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="collector, bars, analytics or gateway")],
) -> None:
    """Run one service in this process (what `python -m tickmesh.<service>` does)."""
    if service not in available_services():
        raise typer.BadParameter(
            f"unknown service {service!r}; expected one of {available_services()}"
        )
    runpy.run_module(f"tickmesh.{service}", run_name="__main__")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def simulate(context: typer.Context) -> None:
    """Run the local exchange simulator (Binance WebSocket + REST); --help lists its options."""
    from tickmesh.collector.simulator.server import main as simulator_main

    raise typer.Exit(simulator_main(context.args))


@app.command()
def features() -> None:
    """List the ML features the analytics service computes: name, unit, group, description, version."""
    from rich.console import Console
    from rich.table import Table

    from tickmesh.analytics.feature_catalog import feature_catalog

    catalog = feature_catalog()
    version = catalog[0].version if catalog else "-"
    table = Table(title=f"{len(catalog)} features, version {version}")
    for column in ("name", "unit", "group", "min bars", "description"):
        table.add_column(column)
    for spec in catalog:
        table.add_row(spec.name, spec.unit, spec.group, str(spec.min_bars), spec.description)
    Console().print(table)


@app.command(name="import")
def import_trades(
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True, dir_okay=False, help="Binance trades or aggTrades CSV files, or zips."
        ),
    ],
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
) -> None:
    """Import Binance public trade CSVs into the bar service, resuming after what was acked."""
    from rich.console import Console

    from tickmesh.collector.binance_csv import CsvKind, ImportFileError
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
            )
        )
    except (ConnectionError, ImportFileError, ValueError) as error:
        console.print(f"[red]import failed:[/red] {error}")
        raise typer.Exit(1) from error
    submitted = sum(result.submitted for result in results)
    skipped = sum(result.skipped for result in results)
    done = sum(1 for result in results if result.already_done)
    console.print(
        f"imported {submitted:,} trades from {len(results)} file(s)"
        f" ({skipped:,} acknowledged before skipped, {done} file(s) already done)"
    )


def main() -> None:
    """Entry point of the `tickmesh` script."""
    app()


if __name__ == "__main__":
    main()
