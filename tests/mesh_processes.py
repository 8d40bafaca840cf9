"""Service processes for whole-process tests: start on free ports, wait for health, kill, restart."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc import aio

from tickmesh.collector.simulator import ExchangeSimulator

from .grpc_helpers import dial, free_port, wait_serving
from .tls_helpers import TestPki


class ProcessExitedError(RuntimeError):
    """The service process ended before it was ready."""


class ServiceProcess:
    """One `python -m tickmesh.<service>` child on a free port.

    With `pki` it serves mutual TLS with its role's certificate (as `tickmesh run` does);
    without, plaintext (TICKMESH_GRPC_INSECURE), for tests that are not about the transport.
    """

    def __init__(
        self, service: str, environment: Mapping[str, str], pki: TestPki | None = None
    ) -> None:
        self.service = service
        self.pki = pki
        self.address = f"127.0.0.1:{free_port()}"
        self.metrics_port = free_port()
        transport = (
            {"TICKMESH_GRPC_INSECURE": "true"}
            if pki is None
            # The test run's plaintext default (conftest.py) does not apply to this child.
            else {"TICKMESH_TLS_DIR": str(pki.tls_dir(service)), "TICKMESH_GRPC_INSECURE": "false"}
        )
        self._environment = {
            **os.environ,
            **transport,
            **environment,
            f"TICKMESH_{service.upper()}_LISTEN": self.address,
            f"TICKMESH_{service.upper()}_METRICS_PORT": str(self.metrics_port),
        }
        self._process: asyncio.subprocess.Process | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"tickmesh-{service}-{self.address[10:]}.log"

    async def start(self, within_seconds: float = 30.0) -> None:
        """Start the process and wait (up to `within_seconds`) until it answers SERVING."""
        command = [sys.executable, "-m", f"tickmesh.{self.service}"]
        with self.log_path.open("ab") as log:
            if SETPRIV is not None:
                # No Python code between fork and exec: a preexec_fn can deadlock in the child
                # when gRPC threads of this process hold a lock (dlopen, malloc) at fork time.
                self._process = await asyncio.create_subprocess_exec(
                    SETPRIV,
                    "--pdeathsig",
                    "KILL",
                    "--",
                    *command,
                    env=self._environment,
                    stderr=log,
                )
            else:
                self._process = await asyncio.create_subprocess_exec(
                    *command, env=self._environment, stderr=log, preexec_fn=_die_with_parent
                )
        waiter = asyncio.create_task(self._wait_ready(within_seconds))
        exited = asyncio.create_task(self._process.wait())
        await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise ProcessExitedError(
                f"{self.service} exited with {self._process.returncode} while starting;"
                f" its log ends:\n{tail}"
            )
        exited.cancel()
        try:
            waiter.result()
        except TimeoutError:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise TimeoutError(f"{self.service} did not start; its log ends:\n{tail}") from None

    def channel(self, role: str = "gateway") -> aio.Channel:
        """A channel to this process: as `role` over TLS, or plaintext when it runs without."""
        return dial(self.address, self.credentials(role))

    def credentials(self, role: str) -> grpc.ChannelCredentials | None:
        """`role`'s channel credentials when this process serves TLS, else None (plaintext)."""
        return None if self.pki is None else self.pki.material(role).channel_credentials()

    async def _wait_ready(self, within_seconds: float) -> None:
        await wait_serving(self.address, within_seconds, self.credentials(self.service))

    @property
    def pid(self) -> int | None:
        """The process id while started (a benchmark samples its CPU and memory)."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Tell whether the process was started and has not exited."""
        return self._process is not None and self._process.returncode is None

    async def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample on the process's /metrics page (0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        page = await asyncio.to_thread(_fetch, url)
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in page.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def kill(self) -> None:
        """SIGKILL: no drain, no last commit."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def stop(self) -> int:
        """SIGTERM and wait; the exit status."""
        assert self._process is not None
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self._process.wait(), timeout=20)
        return int(self._process.returncode or 0)


class GatewayServiceProcess(ServiceProcess):
    """`python -m tickmesh.gateway` on a free HTTP port, ready when /health answers 200."""

    def __init__(self, environment: Mapping[str, str], pki: TestPki | None = None) -> None:
        super().__init__("gateway", environment, pki)
        port = self.metrics_port  # the gateway serves /metrics on its HTTP port
        self._environment["TICKMESH_GATEWAY_PORT"] = str(port)
        self.base_url = f"http://127.0.0.1:{port}"

    async def _wait_ready(self, within_seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + within_seconds
        while True:
            if self._process is not None and self._process.returncode is not None:
                raise TimeoutError("the gateway exited")
            try:
                await asyncio.to_thread(_fetch, self.base_url + "/health")
                return
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("the gateway did not answer /health") from None
                await asyncio.sleep(0.1)


def simulator_urls(sim: ExchangeSimulator) -> dict[str, str]:
    """The collector settings that point its Binance sources at the exchange simulator."""
    return {
        "TICKMESH_COLLECTOR_BINANCE_SPOT_STREAM_URL": sim.ws_url,
        "TICKMESH_COLLECTOR_BINANCE_SPOT_API_URL": sim.api_url,
        "TICKMESH_COLLECTOR_BINANCE_USDM_STREAM_URL": sim.futures_ws_url,
        "TICKMESH_COLLECTOR_BINANCE_USDM_API_URL": sim.futures_api_url,
    }


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the test process dies, so no service outlives a test run."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1
# util-linux's setpriv sets the parent-death signal and execs the service in place.
SETPRIV = shutil.which("setpriv")


def bar_shard_processes(environment: Mapping[str, str], count: int) -> list[ServiceProcess]:
    """`count` bar service shards (not started), committing every 20 ms."""
    return [
        ServiceProcess(
            "bars",
            dict(environment)
            | {
                "TICKMESH_BARS_SHARD_INDEX": str(index),
                "TICKMESH_BARS_SHARD_COUNT": str(count),
                "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
            },
        )
        for index in range(count)
    ]
