"""The `tickmesh` command: run the whole mesh, one service, migrations, and the tools."""

from __future__ import annotations

import asyncio
import enum
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
from tickmesh.core.tls import TlsMaterial
from tickmesh.mesh import certs
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.mesh.export_command import export_dataset
from tickmesh.mesh.import_command import import_trades
from tickmesh.mesh.shard_layout import Child, layout
from tickmesh.mesh.supervisor import Supervisor, available_services

app = typer.Typer(
    help="tickmesh: a real-time market data platform as a gRPC mesh.", no_args_is_help=True
)
app.add_typer(certs.app, name="certs")
app.command(name="import")(import_trades)
app.command(name="export")(export_dataset)
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
        help="Run a collector, a bar service and an analytics service per shard (shard i on "
        "the usual ports + 100·i).",
    ),
]


def _shard_layout(services: list[str], bar_shards: int) -> tuple[list[Child], dict[str, str]]:
    try:
        return layout(services, bar_shards, os.environ)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _child_environments(children: list[Child], state_dir: Path) -> dict[str, dict[str, str]]:
    """Each child's own settings, with its role's certificate (made under STATE_DIR/tls)."""
    tls = certs.child_tls_environments(state_dir, [c.name for c in children], os.environ)
    return {child.name: child.environment | tls.get(child.name, {}) for child in children}


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
            child_environments=_child_environments(children, state_dir),
        )
        log.info("starting %s", ", ".join(child.name for child in children))
        asyncio.run(_supervise(supervisor))
    log.info("stopped")


Speed = Annotated[
    str | None,
    typer.Option(
        help="Replay speed: 1 (real time), 10 or 10x (ten times faster), or max (as fast as "
        "the collector reads; an hour of captures in minutes). Default: 10x for files, so a "
        "capture's minutes close while you watch; 1 for the random walk, a live market.",
    ),
]


TotalRate = Annotated[
    float,
    typer.Option(min=0.001, help="Whole market (--symbols N): trades per second over all of it."),
]


def _instrument_count(symbols: str) -> int | None:
    from tickmesh.collector.simulator.whole_market import instrument_count

    try:
        return instrument_count(symbols)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--symbols") from None


def _walk_symbols(symbols: str) -> list[str]:
    """The random walk's symbols; none when `symbols` is a whole market's size."""
    if symbols.strip().isdigit():
        return []
    return [s.strip().upper() for s in symbols.split(",") if s.strip()]


def _parse_speed(speed: str | None, default: str) -> float | None:
    from tickmesh.collector.simulator import parse_speed

    try:
        return parse_speed(speed if speed is not None else default)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--speed") from None


@app.command()
def demo(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="Binance trade CSV/zip or capture files to replay; each file's instruments are "
            "registered on the venue it comes from (spot or USD-M). None: a random walk.",
        ),
    ] = None,
    state_dir: StateDir = Path(".state/demo"),
    symbols: Annotated[
        str,
        typer.Option(
            help="Symbols to random-walk on both spot and USD-M when no file is given; or a "
            "number N: a whole market of N instruments over both venues (see simulate)."
        ),
    ] = "BTCUSDT,ETHUSDT",
    total_rate: TotalRate = 20_000.0,
    speed: Speed = None,
    simulator_port: Annotated[
        int, typer.Option(envvar="TICKMESH_SIMULATOR_PORT", help="Port of the exchange simulator.")
    ] = 9400,
    bar_shards: BarShards = 1,
) -> None:
    """Run the whole mesh against the local exchange simulator: no internet needed."""
    from tickmesh.collector.simulator import Market
    from tickmesh.mesh.demo_symbols import demo_instruments, register_instruments

    configure_logging("mesh", os.environ.get("TICKMESH_LOG_LEVEL", "INFO"))
    paths = list(files or [])
    chosen_speed = _parse_speed(speed, "10x" if paths else "1")
    children, sharding = _shard_layout(available_services(), bar_shards)
    count = None if paths else _instrument_count(symbols)
    wanted = _walk_symbols(symbols)
    instruments = demo_instruments(paths, wanted, (Market.SPOT, Market.USDM), count)
    simulator = [sys.executable, "-m", "tickmesh.mesh.cli", "simulate", "--port"]
    simulator += [str(simulator_port), "--symbols", symbols, "--seed", "1"]
    simulator += ["--total-rate", f"{total_rate:g}"]
    simulator += ["--speed", "max" if chosen_speed is None else f"{chosen_speed:g}"]
    # A file replays from its start only once the collector listens (at max speed the whole
    # file would otherwise be gone before the instruments are registered).
    simulator += ["--paused", *(str(path) for path in paths)] if paths else []
    base = f"127.0.0.1:{simulator_port}"
    with EmbeddedServers(state_dir) as servers:
        environment = _embedded_environment(servers) | _dashboard_environment()
        environment |= {
            "TICKMESH_COLLECTOR_BINANCE_SPOT_STREAM_URL": f"ws://{base}",
            "TICKMESH_COLLECTOR_BINANCE_SPOT_API_URL": f"http://{base}/api",
            "TICKMESH_COLLECTOR_BINANCE_USDM_STREAM_URL": f"ws://{base}/usdm",
            "TICKMESH_COLLECTOR_BINANCE_USDM_API_URL": f"http://{base}/fapi",
            # The demo registers what it replays; the internet watchlist would only fail here.
            "TICKMESH_COLLECTOR_DEFAULT_WATCHLIST": "",
        }
        environment |= sharding
        commands = {"simulator": simulator} | {child.name: child.command for child in children}
        child_environments = _child_environments(children, state_dir)
        # The demo registers its instruments as the gateway would (SymbolService admits it).
        registrar = (
            TlsMaterial.load(certs.role_tls_dir(state_dir, "gateway"))
            if any("TICKMESH_TLS_DIR" in env for env in child_environments.values())
            else None
        )
        supervisor = Supervisor(commands, environment, child_environments=child_environments)
        log.info(
            "starting the demo: simulator on %s, instruments %s",
            base,
            ", ".join(str(instrument) for instrument in instruments),
        )
        asyncio.run(
            _supervise(
                supervisor,
                lambda: register_instruments(
                    instruments, resume_url=f"http://{base}" if paths else None, tls=registrar
                ),
            )
        )
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


class WalkMarket(enum.StrEnum):
    """Which venues the random walk trades on."""

    SPOT = "spot"
    USDM = "usdm"
    BOTH = "both"


@app.command()
def simulate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help='Captures ("<ts> <json>" lines) or Binance trade CSV/zip files to replay, '
            "each on the venue it comes from. None: a seeded random walk.",
        ),
    ] = None,
    speed: Annotated[
        str, typer.Option(help="Replay speed: 1 (real time), 10 or 10x, or max.")
    ] = "1",
    symbols: Annotated[
        str,
        typer.Option(
            help="Random-walk symbols, comma-separated; or a number N: a whole market of N "
            "instruments W0000USDT... over spot and USD-M, a few busy and most thin."
        ),
    ] = "BTCUSDT,ETHUSDT",
    market: Annotated[
        WalkMarket, typer.Option(help="Venues of the random walk (files detect their own).")
    ] = WalkMarket.BOTH,
    seed: Annotated[int, typer.Option(help="Seed of the random walk and of injected faults.")] = 0,
    rate: Annotated[
        float, typer.Option(min=0.001, help="Random-walk trades per second per symbol.")
    ] = 5.0,
    total_rate: TotalRate = 20_000.0,
    burst_rate: Annotated[
        float, typer.Option(min=0.001, help="Whole market: trades per second during a burst.")
    ] = 100_000.0,
    burst_seconds: Annotated[
        float, typer.Option(min=0.0, help="Whole market: length of a burst (0: none).")
    ] = 10.0,
    burst_every: Annotated[
        float, typer.Option(min=0.0, help="Whole market: a burst ends every this many seconds.")
    ] = 300.0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            envvar="TICKMESH_SIMULATOR_PORT", min=0, max=65535, help="Port (0: any free port)."
        ),
    ] = 9400,
    paused: Annotated[
        bool,
        typer.Option(
            help="Start with the replay paused until POST /sim/resume (the demo resumes it "
            "once the collector has subscribed, so no trade of a file goes unseen)."
        ),
    ] = False,
) -> None:
    """Run the local exchange simulator: Binance spot and USD-M WebSocket streams and REST.

    Spot is served under /api/v3 and ws://HOST:PORT/, USD-M under /fapi/v1 and
    ws://HOST:PORT/usdm. It logs JSON lines to stderr like the services.
    """
    from tickmesh.collector.simulator import (
        Market,
        SimulatorConfig,
        SourceSpec,
        WholeMarket,
        serve_until_signalled,
    )
    from tickmesh.collector.simulator.whole_market import LEDGER_TRADES_PER_SYMBOL

    configure_logging("simulator", os.environ.get("TICKMESH_LOG_LEVEL", "INFO"))
    markets = (Market.SPOT, Market.USDM) if market is WalkMarket.BOTH else (Market(market.value),)
    count = _instrument_count(symbols)
    whole_market = (
        None
        if count is None
        else WholeMarket(count, total_rate, burst_rate, burst_seconds, burst_every)
    )
    config = SimulatorConfig(
        host=host,
        port=port,
        sources=[SourceSpec(path) for path in files or []],
        speed=_parse_speed(speed, "1"),
        symbols=_walk_symbols(symbols),
        random_walk_market=markets[0],
        random_walk_markets=markets,
        trades_per_second=rate,
        whole_market=whole_market,
        ledger_trades_per_symbol=None if count is None else LEDGER_TRADES_PER_SYMBOL,
        seed=seed,
        paused=paused,
    )
    raise typer.Exit(serve_until_signalled(config))


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


def main() -> None:
    """Entry point of the `tickmesh` script."""
    app()


if __name__ == "__main__":
    main()
