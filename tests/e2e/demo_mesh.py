"""`tickmesh demo` as the browser tests use it: free ports, its own state, started early.

The replay test needs minutes of the demo's own history, so tests/e2e/conftest.py starts the
demo when the test session begins and runs these tests last: the history accumulates while
the rest of the suite runs instead of being waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..grpc_helpers import free_port

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "e2e"
TICKMESH = Path(sys.executable).parent / "tickmesh"
STARTUP_SECONDS = 90
ADMIN = ("e2e_admin", "e2e-admin-password-1")
# The same symbol on both Binance venues: two instruments the picker must tell apart.
INSTRUMENTS = (("binance_spot", "BTCUSDT"), ("binance_usdm", "BTCUSDT"))


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET `url`: (status, body text); an HTTP error status with an empty body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


def post(url: str, body: dict[str, str], token: str | None = None) -> dict[str, object]:
    """POST a JSON body (with a bearer token if given); the JSON answer."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer


def tail(log: Path, size: int = 4000) -> str:
    """The last `size` characters of a log file."""
    return log.read_text(errors="replace")[-size:] if log.exists() else "(no log)"


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    """Wait until `url` answers 200; fail with the log's tail if the process exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited {process.returncode}; log:\n{tail(log)}")
        with contextlib.suppress(OSError):
            if get(url)[0] == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {seconds:.0f} s; log:\n{tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (a drain) to the process we started, then SIGKILL to its own process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # leftovers of this test's own session only


def _register_instruments(url: str, seconds: float = 60.0) -> None:
    """Spot and USD-M BTCUSDT through the admin API (the demo may list them already: a no-op).

    The gateway answers before the collector serves: a 503 is retried until `seconds` pass.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            login = post(f"{url}/api/v1/auth/login", {"username": ADMIN[0], "password": ADMIN[1]})
            token = str(login["access_token"])
            for venue, symbol in INSTRUMENTS:
                added = post(
                    f"{url}/api/v1/symbols",
                    {"exchange": venue, "symbol": symbol, "asset_type": "crypto"},
                    token,
                )
                assert added["instrument"] == f"{venue}:{symbol}", added
            return
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(1.0)


class DemoMesh:
    """One `tickmesh demo` process tree on free ports with a fresh state directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._state = Path(tempfile.mkdtemp(prefix="tickmesh-e2e-"))
        self._log = self._state / "demo.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False

    def _environment(self) -> dict[str, str]:
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("TICKMESH_DATABASE_URL", "TICKMESH_REDIS_URL")
        }
        environment |= {
            "TICKMESH_STATE_DIR": str(self._state),
            "TICKMESH_ENVIRONMENT": "development",
            "TICKMESH_GATEWAY_PORT": str(self.port),
            # It runs beside the rest of the suite: nothing may sit on a fixed port.
            "TICKMESH_SIMULATOR_PORT": str(free_port()),
            "TICKMESH_GATEWAY_SIGNUP_ROLE": "trader",  # the browser creates an alert
            "TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000",
            "TICKMESH_GATEWAY_ADMIN_USERNAME": ADMIN[0],
            "TICKMESH_GATEWAY_ADMIN_PASSWORD": ADMIN[1],
        }
        for service in ("collector", "bars", "analytics"):
            address = f"127.0.0.1:{free_port()}"
            environment[f"TICKMESH_{service.upper()}_LISTEN"] = address
            environment[f"TICKMESH_{service.upper()}_ADDRESS"] = address
            environment[f"TICKMESH_{service.upper()}_METRICS_PORT"] = "0"
        return environment

    def start(self) -> None:
        """Spawn the demo; it comes up in the background (see `ready`)."""
        with self._log.open("wb") as sink:
            self._process = subprocess.Popen(
                [str(TICKMESH), "demo"],
                cwd=REPO,
                env=self._environment(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> str:
        """The gateway URL once it answers and both BTCUSDT instruments are registered."""
        if self._process is None:
            self.start()
        assert self._process is not None
        if not self._ready:
            wait_for(f"{self.url}/health", self._process, self._log, STARTUP_SECONDS)
            _register_instruments(self.url)
            self._ready = True
        return self.url

    def close(self) -> None:
        """Stop the demo, keep its log under test-output/e2e and remove its state."""
        if self._process is not None:
            stop(self._process)
            OUTPUT.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._log, OUTPUT / "demo.log")
        shutil.rmtree(self._state, ignore_errors=True)
