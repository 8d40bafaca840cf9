"""Service processes for whole-process tests: start on free ports, wait for health, kill, restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .grpc_helpers import free_port, wait_serving


class ServiceProcess:
    """One `python -m tickmesh.<service>` child on a free port."""

    def __init__(self, service: str, environment: Mapping[str, str]) -> None:
        self.service = service
        self.address = f"127.0.0.1:{free_port()}"
        self._environment = {
            **os.environ,
            **environment,
            f"TICKMESH_{service.upper()}_LISTEN": self.address,
            f"TICKMESH_{service.upper()}_METRICS_PORT": "0",
        }
        self._process: asyncio.subprocess.Process | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"tickmesh-{service}-{self.address[10:]}.log"

    async def start(self) -> None:
        """Start the process and wait until it answers SERVING."""
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"tickmesh.{self.service}",
                env=self._environment,
                stderr=log,
            )
        try:
            await wait_serving(self.address)
        except TimeoutError:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise TimeoutError(f"{self.service} did not start; its log ends:\n{tail}") from None

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
