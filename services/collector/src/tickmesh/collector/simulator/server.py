"""The exchange simulator as one object: aiohttp app, replay task, control endpoint, CLI main."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web

from tickmesh.collector.simulator.config import (
    FaultConfig,
    Market,
    SimulatorConfig,
    SourceSpec,
    WholeMarket,
)
from tickmesh.collector.simulator.hub import SimulatorStats, StreamHub
from tickmesh.collector.simulator.ledger import TradeLedger
from tickmesh.collector.simulator.replay import ReplayEngine
from tickmesh.collector.simulator.rest import RestApi
from tickmesh.collector.simulator.sources import open_sources, source_increments
from tickmesh.collector.simulator.websocket import WebSocketEndpoint
from tickmesh.collector.simulator.whole_market import LEDGER_TRADES_PER_SYMBOL, instrument_count
from tickmesh.core.logs import configure_logging

_log = logging.getLogger(__name__)
_FAULT_FIELDS = frozenset(f.name for f in dataclasses.fields(FaultConfig))


class ExchangeSimulator:
    """A local Binance (spot + USD-M) on one port: WebSocket streams, REST, faults on request."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.stats = SimulatorStats()
        self.ledger = TradeLedger(self.config.ledger_trades_per_symbol)
        self.hub = StreamHub(self.stats)
        events, listed = open_sources(self.config, time.time_ns() // 1_000_000)
        for market, symbols in listed.items():
            for symbol in symbols:
                self.ledger.register(market, symbol)
        self.replay = ReplayEngine(events, self.config, self.hub, self.ledger, self.stats)
        self.rest = RestApi(
            self.ledger, self.config, self.stats, listed, source_increments(self.config)
        )
        self._ws = WebSocketEndpoint(self.hub, self.config, self.stats)
        self._runner: web.AppRunner | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._port = 0

    async def start(self) -> None:
        """Bind the port and start the replay."""
        app = web.Application()
        app.add_routes(self._ws.routes())
        app.add_routes(self.rest.routes())
        app.add_routes(
            [
                web.get("/sim/status", self._status),
                web.post("/sim/faults", self._set_faults),
                web.post("/sim/drop", self._drop),
                web.post("/sim/pause", self._pause),
                web.post("/sim/resume", self._resume),
            ]
        )
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        # Bind the socket ourselves so an ephemeral port (port=0) can be read back.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._replay_task = asyncio.create_task(self.replay.run(), name="simulator-replay")
        _log.info("exchange simulator on %s (ws %s)", self.rest_url, self.ws_url)

    async def stop(self) -> None:
        """Stop the replay, close every connection and release the port."""
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
            self._replay_task = None
        for connection in list(self.hub.connections):
            connection.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (0 before start)."""
        return self._port

    @property
    def rest_url(self) -> str:
        """Base HTTP URL, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.config.host}:{self._port}"

    @property
    def api_url(self) -> str:
        """Spot REST root for python-binance's AsyncClient.API_URL."""
        return self.rest_url + "/api"

    @property
    def futures_api_url(self) -> str:
        """USD-M REST root for python-binance's AsyncClient.FUTURES_URL."""
        return self.rest_url + "/fapi"

    @property
    def ws_url(self) -> str:
        """Spot stream root (append 'stream?streams=' or 'ws/<stream>'); STREAM_URL."""
        return f"ws://{self.config.host}:{self._port}/"

    @property
    def futures_ws_url(self) -> str:
        """USD-M stream root; python-binance's BinanceSocketManager.FSTREAM_URL."""
        return f"ws://{self.config.host}:{self._port}/usdm/"

    def pause(self) -> None:
        """Stop releasing trades."""
        self.replay.pause()

    def resume(self) -> None:
        """Release trades again."""
        self.replay.resume()

    def drop_connections(self) -> int:
        """Abort every WebSocket connection now; return how many were open."""
        self.stats.drop_events += 1
        return self.hub.drop_all()

    async def wait_replay_done(self) -> None:
        """Wait until every finite source has been released (wrap in asyncio.timeout)."""
        await self.replay.done.wait()

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "stats": self.stats.as_dict(),
                "paused": self.replay.paused,
                "done": self.replay.done.is_set(),
                "connections": len(self.hub.connections),
                # "<market>:<stream>" of every live subscription (the demo waits for its own).
                "subscriptions": sorted(
                    {
                        f"{connection.market.value}:{stream}"
                        for connection in self.hub.connections
                        for stream in connection.subscriptions
                    }
                ),
                "faults": dataclasses.asdict(self.config.faults),
                "symbols": {m.value: self.ledger.symbols(m) for m in Market},
            }
        )

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="body must be a JSON object") from None
        if not isinstance(changes, dict) or not set(changes) <= set(_FAULT_FIELDS):
            unknown = sorted(set(changes) - set(_FAULT_FIELDS)) if isinstance(changes, dict) else []
            raise web.HTTPBadRequest(text=f"unknown fault settings: {unknown}")
        faults = self.config.faults
        for name, value in changes.items():
            current = getattr(faults, name)
            if type(value) is not type(current) and not (
                isinstance(current, float) and type(value) is int
            ):
                raise web.HTTPBadRequest(text=f"{name} must be a {type(current).__name__}")
            setattr(faults, name, type(current)(value))
        if "drop_connections" in changes:
            self.replay.schedule_drops(faults.drop_connections, faults.drop_within_trades)
        return web.json_response(dataclasses.asdict(faults))

    async def _drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": self.drop_connections()})

    async def _pause(self, request: web.Request) -> web.Response:
        self.pause()
        return web.json_response({"paused": True})

    async def _resume(self, request: web.Request) -> web.Response:
        self.resume()
        return web.json_response({"paused": False})


async def run_simulator(
    config: SimulatorConfig, stop: asyncio.Event | None = None, *, exit_when_done: bool = False
) -> SimulatorStats:
    """Run a simulator until `stop` is set (or the replay ends, if asked); return its stats."""
    stop = stop or asyncio.Event()
    async with ExchangeSimulator(config) as simulator:
        waiters = [asyncio.create_task(stop.wait())]
        if exit_when_done:
            waiters.append(asyncio.create_task(simulator.replay.done.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return simulator.stats


def parse_speed(text: str) -> float | None:
    """A replay speed: "1" real time, "10" or "10x" ten times faster, "max" as fast as read."""
    if text.strip().lower() in ("max", "full", "0"):
        return None
    try:
        value = float(text.strip().lower().removesuffix("x"))
    except ValueError:
        raise ValueError(f"speed {text!r} must be a number (1, 10, 10x) or 'max'") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"speed {text!r} must be positive, or 'max'")
    return value


def _speed(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Build a SimulatorConfig from command-line arguments (the argparse form of the options)."""
    parser = argparse.ArgumentParser(prog="tickmesh simulate", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="captures or Binance trade CSV/zip")
    parser.add_argument("--speed", type=_speed, default=1.0, help="1, 10x, ... or max")
    parser.add_argument(
        "--symbols", default="BTCUSDT,ETHUSDT", help="random-walk symbols, or N: a whole market"
    )
    parser.add_argument("--total-rate", type=float, default=20_000.0, help="whole-market trades/s")
    parser.add_argument("--market", choices=[m.value for m in Market], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=5.0, help="random-walk trades/s per symbol")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    args = parser.parse_args(argv)
    market = Market(args.market) if args.market else None
    count = instrument_count(args.symbols)
    return SimulatorConfig(
        whole_market=None if count is None else WholeMarket(count, rate=args.total_rate),
        ledger_trades_per_symbol=None if count is None else LEDGER_TRADES_PER_SYMBOL,
        host=args.host,
        port=args.port,
        sources=[SourceSpec(path, market) for path in args.files],
        speed=args.speed,
        symbols=[]
        if count is not None
        else [s.strip().upper() for s in args.symbols.split(",") if s.strip()],
        random_walk_market=market or Market.SPOT,
        trades_per_second=args.rate,
        seed=args.seed,
    )


def _listing(symbols: Iterable[str]) -> str:
    """A venue's symbols for the log: named when few, counted when a whole market."""
    names = sorted(symbols)
    return ",".join(names) or "-" if len(names) <= 20 else f"{len(names)} instruments"


def serve_until_signalled(config: SimulatorConfig) -> int:
    """Run the simulator in this process until SIGINT or SIGTERM; the exit status."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with ExchangeSimulator(config) as simulator:
            _log.info(
                "exchange simulator on %s: spot %s, USD-M %s, speed %s",
                simulator.rest_url,
                _listing(simulator.rest.listed(Market.SPOT)),
                _listing(simulator.rest.listed(Market.USDM)),
                "max" if config.speed is None else f"{config.speed:g}x",
            )
            await stop.wait()

    asyncio.run(serve())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator from argparse-style arguments until SIGINT or SIGTERM."""
    config = parse_args(argv)
    configure_logging("simulator", os.environ.get("TICKMESH_LOG_LEVEL", "INFO"))
    return serve_until_signalled(config)
