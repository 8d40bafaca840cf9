"""`tickmesh demo <USD-M capture>` gives USD-M bars with no other step.

The whole demo mesh runs as the user starts it (simulator, collector, bars, analytics,
gateway as processes) on free ports, against this run's PostgreSQL and Redis. The capture's
instrument is registered on the venue the file comes from, and its full minutes are served
by the bar service equal to Binance's own klines, exactly.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import grpc
from grpc import aio

from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    market_pb2,
    symbol_service_pb2,
    symbol_service_pb2_grpc,
)

from ..grpc_helpers import free_port
from ..ingest_helpers import fixtures_root
from ..tls_helpers import run_credentials, without_insecure

USDM_CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt"
USDM_KLINES = "binance_futures_um/BTCUSDT-1m-2024-08-08_2350_to_2024-08-09_0010.csv"
# The capture's full minutes 23:55..23:58 (23:59 closes only when a later trade arrives).
MINUTES = [(1_723_161_300 + 60 * i) * 1_000_000_000 for i in range(4)]
MINUTE_NS = 60_000_000_000


def _klines() -> dict[int, tuple[Decimal, ...]]:
    with (fixtures_root() / USDM_KLINES).open(newline="") as handle:
        return {
            int(row["open_time"]) * 1_000_000: (
                *(Decimal(row[k]) for k in ("open", "high", "low", "close", "volume")),
                Decimal(row["count"]),
            )
            for row in csv.DictReader(handle)
        }


async def _bars(
    address: str, credentials: grpc.ChannelCredentials
) -> dict[int, tuple[Decimal, ...]]:
    async with aio.secure_channel(address, credentials) as channel:
        response = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=InstrumentId.parse("binance_usdm:BTCUSDT").to_proto(),
                timeframe=market_pb2.TIMEFRAME_1M,
                start_time_ns=MINUTES[0],
                end_time_ns=MINUTES[-1] + MINUTE_NS,
                limit=100,
            ),
            timeout=5,
        )
    return {
        bar.open_time_ns: (
            *(Decimal(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume)),
            Decimal(bar.trade_count),
        )
        for bar in response.bars
        if bar.final
    }


async def test_demo_of_a_usdm_capture_serves_usdm_bars_equal_to_klines(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("collector", "bars", "analytics")}
    environment = {
        key: value
        for key, value in without_insecure(os.environ).items()
        if not key.startswith("TICKMESH_BARS_")
    } | {
        # Fresh ones: bars cached in a shared Redis by an earlier run would pass for this one's.
        "TICKMESH_DATABASE_URL": fresh_database_url,
        "TICKMESH_REDIS_URL": fresh_redis_url,
        "TICKMESH_GATEWAY_PORT": str(free_port()),
        "TICKMESH_SIMULATOR_PORT": str(free_port()),
        "TICKMESH_DRAIN_SECONDS": "1",
    }
    for name, address in addresses.items():
        environment[f"TICKMESH_{name.upper()}_LISTEN"] = address
        environment[f"TICKMESH_{name.upper()}_ADDRESS"] = address
        environment[f"TICKMESH_{name.upper()}_METRICS_PORT"] = "0"
    environment["TICKMESH_BARS_ADDRESS"] = addresses["bars"]
    log = tmp_path / "demo.log"
    tickmesh = Path(sys.executable).parent / "tickmesh"
    with log.open("wb") as sink:
        demo = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then polls it
            [
                str(tickmesh),
                "demo",
                str(fixtures_root() / USDM_CAPTURE),
                "--speed",
                "max",
                "--state-dir",
                str(tmp_path),
            ],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # The demo serves mutual TLS with certificates it makes under its state dir.
        reader = await run_credentials(tmp_path, "reader")
        expected = _klines()
        built: dict[int, tuple[Decimal, ...]] = {}
        for _ in range(240):
            try:
                built = await _bars(addresses["bars"], reader)
            except aio.AioRpcError:
                built = {}
            if all(minute in built for minute in MINUTES):
                break
            assert demo.poll() is None, log.read_text(errors="replace")[-3000:]
            await asyncio.sleep(0.5)
        assert {minute: built.get(minute) for minute in MINUTES} == {
            minute: expected[minute] for minute in MINUTES
        }, log.read_text(errors="replace")[-3000:]
        gateway = await run_credentials(tmp_path, "gateway")
        async with aio.secure_channel(addresses["collector"], gateway) as channel:
            try:
                listed = await symbol_service_pb2_grpc.SymbolServiceStub(channel).ListSymbols(
                    symbol_service_pb2.ListSymbolsRequest(), timeout=30, wait_for_ready=True
                )
            except aio.AioRpcError as error:
                raise AssertionError(log.read_text(errors="replace")[-6000:]) from error
        usdm = [s for s in listed.symbols if s.symbol == "BTCUSDT"]
        assert [(s.exchange, s.active) for s in usdm] == [(market_pb2.EXCHANGE_BINANCE_USDM, True)]
        assert (usdm[0].price_increment, usdm[0].quantity_increment) == ("0.1", "0.001")
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
