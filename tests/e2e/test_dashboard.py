"""The dashboard end to end: `tickmesh demo`, the built frontend and Debian's Chromium.

A second browser script (frontend/e2e/replay.e2e.mjs) plays a past range of the same mesh in
the dashboard's replay mode at 60x and checks that the chart advances while it plays.

The browser script (frontend/e2e/dashboard.e2e.mjs, playwright-core driving
/usr/bin/chromium) registers a user, sees BTCUSDT listed on Binance spot and on Binance USD-M
and the chart of each (also after a reload of a link naming one), sees candles and a live update,
toggles overlays, opens the RSI and MACD panes, creates an alert and sees it fire;
screenshots land in test-output/e2e/. This module brings up what it needs: Chromium
from Debian's packages, `npm ci` and `vite build` when the build is missing or stale,
and the whole demo mesh on free ports with its own state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
OUTPUT = REPO / "test-output" / "e2e"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
TICKMESH = Path(sys.executable).parent / "tickmesh"
BROWSER_SECONDS = 180
STARTUP_SECONDS = 90
ADMIN = ("e2e_admin", "e2e-admin-password-1")
# The same symbol on both Binance venues: two instruments the picker must tell apart.
INSTRUMENTS = (("binance_spot", "BTCUSDT"), ("binance_usdm", "BTCUSDT"))
# The replayed range: this many whole minutes of the demo's own history, played at 60x.
REPLAY_MINUTES = 4
REPLAY_WAIT_SECONDS = 480


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited {process.returncode}; log:\n{_tail(log)}")
        with contextlib.suppress(OSError):
            if _get(url)[0] == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {seconds:.0f} s; log:\n{_tail(log)}")


def _tail(log: Path, size: int = 4000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
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


def _post(url: str, body: dict[str, str], token: str | None = None) -> dict[str, object]:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer


def _register_instruments(url: str, seconds: float = 60.0) -> None:
    """Spot and USD-M BTCUSDT through the admin API (the demo may list them already: a no-op).

    The gateway answers before the collector serves: a 503 is retried until `seconds` pass.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            login = _post(f"{url}/api/v1/auth/login", {"username": ADMIN[0], "password": ADMIN[1]})
            token = str(login["access_token"])
            for venue, symbol in INSTRUMENTS:
                added = _post(
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


def _ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(
            f"{CHROMIUM} is missing and apt-get could not install it (Debian package chromium)"
        )
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        subprocess.run(command, check=True, capture_output=True, timeout=600)


def _newest_mtime(paths: list[Path]) -> float:
    stamps = [
        item.stat().st_mtime
        for path in paths
        for item in (path.rglob("*") if path.is_dir() else [path])
        if item.is_file()
    ]
    return max(stamps, default=0.0)


def _ensure_frontend_built() -> None:
    """`npm ci` when node_modules is older than the lock file, `npm run build` when stale."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("Node.js 20 and npm are needed to build the dashboard (see README)")
    installed = FRONTEND / "node_modules" / ".package-lock.json"
    lock = FRONTEND / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=FRONTEND,
            check=True,
            timeout=300,
        )
    built = FRONTEND / "dist" / "index.html"
    sources = [FRONTEND / name for name in ("src", "index.html", "vite.config.ts", "package.json")]
    if not built.exists() or built.stat().st_mtime < _newest_mtime(sources):
        subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True, timeout=300)


@pytest.fixture(scope="module")
def demo_gateway() -> Iterator[str]:
    """`tickmesh demo` on free ports with a fresh state directory; yields the gateway URL."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="tickmesh-e2e-") as state:
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("TICKMESH_DATABASE_URL", "TICKMESH_REDIS_URL")
        }
        environment |= {
            "TICKMESH_STATE_DIR": state,
            "TICKMESH_ENVIRONMENT": "development",
            "TICKMESH_GATEWAY_PORT": str(port),
            "TICKMESH_GATEWAY_SIGNUP_ROLE": "trader",  # the browser creates an alert
            "TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000",
            "TICKMESH_GATEWAY_ADMIN_USERNAME": ADMIN[0],
            "TICKMESH_GATEWAY_ADMIN_PASSWORD": ADMIN[1],
        }
        for service in ("collector", "bars", "analytics"):
            address = f"127.0.0.1:{_free_port()}"
            environment[f"TICKMESH_{service.upper()}_LISTEN"] = address
            environment[f"TICKMESH_{service.upper()}_ADDRESS"] = address
            environment[f"TICKMESH_{service.upper()}_METRICS_PORT"] = "0"
        log = Path(state) / "demo.log"
        with log.open("wb") as sink:
            demo = subprocess.Popen(
                [str(TICKMESH), "demo"],
                cwd=REPO,
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_for(f"{url}/health", demo, log, STARTUP_SECONDS)
            _register_instruments(url)
            yield url
        finally:
            _stop(demo)
            OUTPUT.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, OUTPUT / "demo.log")


@pytest.fixture(scope="module")
def dashboard_url(demo_gateway: str) -> Iterator[str]:
    """Where the browser goes: the gateway when it serves the build, else `vite preview`."""
    _ensure_frontend_built()
    status, body = _get(f"{demo_gateway}/")
    if status == 200 and 'id="root"' in body:
        yield demo_gateway
        return
    port = _free_port()
    log = OUTPUT / "vite-preview.log"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        preview = subprocess.Popen(
            [
                str(FRONTEND / "node_modules" / ".bin" / "vite"),
                "preview",
                "--strictPort",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=FRONTEND,
            env={**os.environ, "TICKMESH_GATEWAY_URL": demo_gateway},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for(f"http://127.0.0.1:{port}/", preview, log, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(preview)


def test_dashboard_in_chromium_against_demo_mesh_passes_every_step(dashboard_url: str) -> None:
    _ensure_chromium()
    run = subprocess.run(
        ["node", "e2e/dashboard.e2e.mjs", "--url", dashboard_url, "--out", str(OUTPUT)],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=BROWSER_SECONDS,
        check=False,
    )
    (OUTPUT / "browser.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"browser steps failed:\n{run.stdout}\n{run.stderr}"
    assert (OUTPUT / "05-alert-fired.png").exists()


def _first_bar_minute(url: str, token: str) -> int:
    """The open time (epoch s) of the demo's first final 1m bar of USD-M BTCUSDT; 0 before one."""
    request = urllib.request.Request(
        f"{url}/api/v1/charts/binance_usdm:BTCUSDT?timeframe=1m&limit=5000&indicators=false",
        headers={"authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        bars = json.loads(response.read())["bars"]
    return int(bars[0]["time"]) if bars else 0


# Run alone, it first waits for the demo to make REPLAY_MINUTES of history: past the default
# 300 s limit on a slow machine.
@pytest.mark.timeout(REPLAY_WAIT_SECONDS + BROWSER_SECONDS + STARTUP_SECONDS)
def test_replay_mode_in_chromium_plays_a_past_range_at_60x(
    demo_gateway: str, dashboard_url: str
) -> None:
    _ensure_chromium()
    # The range starts at the first bar the demo committed and spans REPLAY_MINUTES whole
    # minutes that are over (their bars are final and committed), waiting for them if needed.
    deadline = time.monotonic() + REPLAY_WAIT_SECONDS
    # One login: logins are rate limited far below reads.
    login = _post(f"{demo_gateway}/api/v1/auth/login", {"username": ADMIN[0], "password": ADMIN[1]})
    token = str(login["access_token"])
    while True:
        first = _first_bar_minute(demo_gateway, token)
        now_minute = int(time.time()) // 60 * 60
        if first and now_minute - first >= (REPLAY_MINUTES + 1) * 60:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the demo has no {REPLAY_MINUTES} minutes of bars to replay")
        time.sleep(5)
    start = now_minute - REPLAY_MINUTES * 60
    minute = "%Y-%m-%dT%H:%M"
    run = subprocess.run(
        [
            "node",
            "e2e/replay.e2e.mjs",
            "--url",
            dashboard_url,
            "--out",
            str(OUTPUT),
            "--from",
            datetime.fromtimestamp(start, UTC).strftime(minute),
            "--to",
            datetime.fromtimestamp(now_minute, UTC).strftime(minute),
        ],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=BROWSER_SECONDS,
        check=False,
    )
    (OUTPUT / "replay-browser.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"replay steps failed:\n{run.stdout}\n{run.stderr}"
    assert (OUTPUT / "replay-02-played.png").exists()
