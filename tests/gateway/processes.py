"""Real gateway and collector processes for the whole-mesh gateway tests."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..grpc_helpers import free_port, wait_serving
from ..mesh_processes import ServiceProcess

SECRET = "whole-mesh-test-secret-0123456789abcdef"
ADMIN = ("admin", "admin-password-123")


@dataclass
class RunningProcess:
    """A child process whose stderr goes to a file (a pipe nobody reads could block it)."""

    process: asyncio.subprocess.Process
    log_path: Path

    async def stop(self) -> int:
        """SIGTERM, wait for the drain, return the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return int(self.process.returncode or 0)

    async def kill(self) -> None:
        """SIGKILL: no drain."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log(self) -> str:
        """What the process wrote to stderr."""
        return self.log_path.read_text(errors="replace")


@dataclass
class GatewayProcess(RunningProcess):
    """A running `python -m tickmesh.gateway` and its base URL."""

    base_url: str


async def start_process(module: str, env: dict[str, str], log_path: Path) -> RunningProcess:
    """Start `python -m module` with `env` on top of this environment."""
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env={**os.environ, **env}, stderr=log
        )
    return RunningProcess(process, log_path)


async def start_collector(
    database_url: str, redis_url: str, log_path: Path, **env: str
) -> tuple[RunningProcess, str]:
    """A real collector serving SymbolService; returns it and its address."""
    address = f"127.0.0.1:{free_port()}"
    running = await start_process(
        "tickmesh.collector",
        {
            "TICKMESH_DATABASE_URL": database_url,
            "TICKMESH_REDIS_URL": redis_url,
            "TICKMESH_COLLECTOR_LISTEN": address,
            "TICKMESH_COLLECTOR_METRICS_PORT": "0",
            "TICKMESH_DRAIN_SECONDS": "1",
        }
        | env,
        log_path,
    )
    await wait_serving(address)
    return running, address


async def start_gateway(
    database_url: str, redis_url: str, log_path: Path, **env: str
) -> GatewayProcess:
    """A real gateway process on a free port, waited for until /health answers."""
    port = free_port()
    settings = {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_ENVIRONMENT": "test",
        "TICKMESH_GATEWAY_PORT": str(port),
        "TICKMESH_GATEWAY_JWT_SECRET": SECRET,
        "TICKMESH_GATEWAY_ADMIN_USERNAME": ADMIN[0],
        "TICKMESH_GATEWAY_ADMIN_PASSWORD": ADMIN[1],
        "TICKMESH_COLLECTOR_ADDRESS": "127.0.0.1:1",
        "TICKMESH_BARS_ADDRESS": "127.0.0.1:1",
        "TICKMESH_ANALYTICS_ADDRESS": "127.0.0.1:1",
        "TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS": "1",
        "TICKMESH_DRAIN_SECONDS": "1",
    } | env
    # A list names the shards alone.
    for service in ("BARS", "ANALYTICS"):
        if f"TICKMESH_{service}_ADDRESSES" in env:
            del settings[f"TICKMESH_{service}_ADDRESS"]
    running = await start_process("tickmesh.gateway", settings, log_path)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base_url) as client:
        while True:
            if running.process.returncode is not None:
                raise RuntimeError(f"gateway exited: {running.log()}")
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway not up: {running.log()}")
            await asyncio.sleep(0.1)
    return GatewayProcess(running.process, log_path, base_url)


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    """The Authorization header of a fresh login."""
    reply = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


async def register(base_url: str, admin: Mapping[str, str], *instruments: str) -> None:
    """Register instruments through the admin API: WebSockets serve registered ones only."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        for instrument in instruments:
            venue, _, symbol = instrument.partition(":")
            reply = await client.post(
                "/api/v1/symbols",
                json={"exchange": venue, "symbol": symbol, "asset_type": "crypto"},
                headers=dict(admin),
            )
            reply.raise_for_status()


@dataclass
class BarsAnalyticsGateway:
    """A bar service, analytics on it, a gateway on both, and an admin's header."""

    bars: ServiceProcess
    analytics: ServiceProcess
    gateway: GatewayProcess
    headers: dict[str, str]

    async def register(self, *instruments: str) -> None:
        """Register instruments (in the collector behind the gateway) as the admin."""
        await register(self.gateway.base_url, self.headers, *instruments)

    @property
    def token(self) -> str:
        """The admin's access token."""
        return self.headers["Authorization"].removeprefix("Bearer ")


@asynccontextmanager
async def bars_analytics_gateway(
    database_url: str,
    redis_url: str,
    log_path: Path,
    common: Mapping[str, str] | None = None,
    **gateway_env: str,
) -> AsyncIterator[BarsAnalyticsGateway]:
    """Start the three and a collector holding the registry (with `common` settings for all of
    them), yield them, stop them."""
    env = {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_DRAIN_SECONDS": "1",
        **(common or {}),
    }
    bars = ServiceProcess("bars", env | {"TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    analytics = ServiceProcess(
        "analytics",
        env
        | {"TICKMESH_BARS_ADDRESS": bars.address, "TICKMESH_ANALYTICS_COMMIT_INTERVAL_MS": "20"},
    )
    gateway: GatewayProcess | None = None
    collector: RunningProcess | None = None
    try:
        await bars.start()
        await analytics.start()
        collector, collector_address = await start_collector(
            database_url, redis_url, log_path.with_name("collector.log")
        )
        gateway = await start_gateway(
            database_url,
            redis_url,
            log_path,
            TICKMESH_COLLECTOR_ADDRESS=collector_address,
            TICKMESH_BARS_ADDRESS=bars.address,
            TICKMESH_ANALYTICS_ADDRESS=analytics.address,
            # Defaults a caller's settings may override (one dict, so no keyword is doubled).
            **(
                {
                    "TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS": "5",
                    "TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE": "10000",
                }
                | dict(common or {})
                | gateway_env
            ),
        )
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            headers = await login(client, *ADMIN)
        yield BarsAnalyticsGateway(bars, analytics, gateway, headers)
    finally:
        if gateway is not None:
            await gateway.stop()
        if collector is not None:
            await collector.stop()
        for process in (analytics, bars):
            if process.running:
                await process.stop()
