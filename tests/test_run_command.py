"""`tickmesh run` brings up every service as its own process and stops them on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from pathlib import Path

from .grpc_helpers import free_port, wait_serving


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
        **os.environ,
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
    )
    try:
        for address in addresses.values():
            await wait_serving(address)
        assert await _wait_gateway(gateway_port) == b'{"status":"ok"}'
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0
    assert stderr.count(b"grpc draining") == 3
    assert b"exited with" not in stderr
