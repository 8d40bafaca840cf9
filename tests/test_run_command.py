"""`tickmesh run` brings up every service as its own process and stops them on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_of
from tickmesh.mesh.shard_layout import PORT_STEP, layout
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from .grpc_helpers import free_port, wait_serving
from .tls_helpers import run_credentials, without_insecure


def _gateway_health(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        body: bytes = response.read()
        return body


async def _wait_gateway(port: int, within_seconds: float = 30.0) -> bytes:
    for _ in range(int(within_seconds * 10)):
        try:
            return await asyncio.to_thread(_gateway_health, port)
        except OSError:
            await asyncio.sleep(0.1)
    raise TimeoutError("gateway did not answer /health")


async def test_run_starts_every_service_and_ctrl_c_stops_them(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in ("collector", "bars", "analytics")}
    gateway_port = free_port()
    environment = {
        **without_insecure(os.environ),
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_GATEWAY_PORT": str(gateway_port),
        "TICKMESH_DRAIN_SECONDS": "1",
    }
    for name, address in addresses.items():
        environment[f"TICKMESH_{name.upper()}_LISTEN"] = address
        environment[f"TICKMESH_{name.upper()}_ADDRESS"] = address
        environment[f"TICKMESH_{name.upper()}_METRICS_PORT"] = "0"
    tickmesh = Path(sys.executable).parent / "tickmesh"
    process = await asyncio.create_subprocess_exec(
        str(tickmesh),
        "run",
        "--state-dir",
        str(tmp_path),
        env=environment,
        stderr=asyncio.subprocess.PIPE,
        # Its own process group: a failed test kills the services too, not just `tickmesh`.
        start_new_session=True,
    )
    try:
        # `tickmesh run` serves mutual TLS with certificates it makes under its state dir.
        reader = await run_credentials(tmp_path, "reader")
        for address in addresses.values():
            await wait_serving(address, credentials=reader)
        assert await _wait_gateway(gateway_port) == b'{"status":"ok"}'
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0
    assert stderr.count(b"grpc draining") == 3
    assert b"exited with" not in stderr


def _free_port_pair(step: int) -> int:
    """A port p such that p and p + step are both free (shard 0 and shard 1 of a service)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + step))
            except OSError:
                continue
        return port


def _mesh_health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


async def test_run_with_two_bar_shards_pairs_collector_and_bar_shards(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    collector, bars = _free_port_pair(PORT_STEP), _free_port_pair(PORT_STEP)
    analytics, gateway_port = _free_port_pair(PORT_STEP), free_port()
    environment = {
        key: value
        for key, value in without_insecure(os.environ).items()
        if not key.startswith(("TICKMESH_BARS_", "TICKMESH_ANALYTICS_"))
    } | {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_GATEWAY_PORT": str(gateway_port),
        "TICKMESH_DRAIN_SECONDS": "1",
        "TICKMESH_COLLECTOR_LISTEN": f"127.0.0.1:{collector}",
        "TICKMESH_COLLECTOR_ADDRESS": f"127.0.0.1:{collector}",
        "TICKMESH_BARS_LISTEN": f"127.0.0.1:{bars}",
        "TICKMESH_ANALYTICS_LISTEN": f"127.0.0.1:{analytics}",
    }
    for service in ("COLLECTOR", "BARS", "ANALYTICS"):
        environment[f"TICKMESH_{service}_METRICS_PORT"] = "0"
    tickmesh = Path(sys.executable).parent / "tickmesh"
    process = await asyncio.create_subprocess_exec(
        str(tickmesh),
        "run",
        "--state-dir",
        str(tmp_path),
        "--bar-shards",
        "2",
        env=environment,
        stderr=asyncio.subprocess.PIPE,
        # Its own process group: a failed test kills the services too, not just `tickmesh`.
        start_new_session=True,
    )
    try:
        shards = [f"127.0.0.1:{bars + PORT_STEP * i}" for i in range(2)]
        reader = await run_credentials(tmp_path, "reader")
        for port in (collector, collector + PORT_STEP, analytics, analytics + PORT_STEP):
            await wait_serving(f"127.0.0.1:{port}", credentials=reader)
        for address in shards:
            await wait_serving(address, credentials=reader)
        await _wait_gateway(gateway_port)
        health = await asyncio.to_thread(_mesh_health, gateway_port)
        assert {
            name for name in health["components"] if name.startswith(("bars", "analytics"))
        } == {"bars-0", "bars-1", "analytics-0", "analytics-1"}
        # Bar shard 1 of 2 is what it was told: it refuses an instrument of shard 0.
        instrument = next(
            i
            for i in map(InstrumentId.parse, ("binance_spot:ETHUSDT", "binance_spot:BTCUSDT"))
            if shard_of(i, 2) == 0
        )
        async with aio.secure_channel(shards[1], reader) as channel:
            with pytest.raises(aio.AioRpcError) as refused:
                await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
                    bar_service_pb2.GetBarsRequest(
                        instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M
                    )
                )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0
    assert stderr.count(b"grpc draining") == 6
    assert b"exited with" not in stderr


def test_layout_of_one_shard_runs_each_service_once() -> None:
    children, shared = layout(["collector", "bars", "gateway"], 1, {})
    assert [child.name for child in children] == ["collector", "bars", "gateway"]
    assert shared == {}


def test_layout_of_three_shards_pairs_collectors_bar_services_and_analytics() -> None:
    children, shared = layout(["collector", "bars", "analytics", "gateway"], 3, {})
    by_name = {child.name: child.environment for child in children}
    assert list(by_name) == [
        *(f"collector-{i}" for i in range(3)),
        *(f"bars-{i}" for i in range(3)),
        *(f"analytics-{i}" for i in range(3)),
        "gateway",
    ]
    assert shared == {
        "TICKMESH_BARS_ADDRESSES": "127.0.0.1:50052,127.0.0.1:50152,127.0.0.1:50252",
        "TICKMESH_ANALYTICS_ADDRESSES": "127.0.0.1:50053,127.0.0.1:50153,127.0.0.1:50253",
    }
    assert by_name["collector-2"] == {
        "TICKMESH_COLLECTOR_LISTEN": "127.0.0.1:50251",
        "TICKMESH_COLLECTOR_METRICS_PORT": "9301",
        "TICKMESH_COLLECTOR_SHARD_INDEX": "2",
        "TICKMESH_COLLECTOR_SHARD_COUNT": "3",
    }
    assert by_name["bars-1"]["TICKMESH_BARS_SHARD_INDEX"] == "1"
    assert by_name["analytics-2"] == {
        "TICKMESH_ANALYTICS_LISTEN": "127.0.0.1:50253",
        "TICKMESH_ANALYTICS_METRICS_PORT": "9303",
        "TICKMESH_ANALYTICS_SHARD_INDEX": "2",
        "TICKMESH_ANALYTICS_SHARD_COUNT": "3",
    }
    assert by_name["gateway"] == {}


def test_layout_refuses_a_bar_address_it_would_override() -> None:
    with pytest.raises(ValueError, match="unset TICKMESH_BARS_ADDRESS"):
        layout(["bars"], 2, {"TICKMESH_BARS_ADDRESS": "127.0.0.1:1"})
    with pytest.raises(ValueError, match=r"unset TICKMESH_ANALYTICS_ADDRESS$"):
        layout(["analytics"], 2, {"TICKMESH_ANALYTICS_ADDRESS": "127.0.0.1:1"})
