"""The dashboard end to end: `tickmesh demo`, the built frontend and Debian's Chromium.

A second browser script (frontend/e2e/replay.e2e.mjs) plays a past range of the same mesh in
the dashboard's replay mode at 60x and checks that the chart advances while it plays.

The browser script (frontend/e2e/dashboard.e2e.mjs, playwright-core driving
/usr/bin/chromium) registers a user, sees BTCUSDT listed on Binance spot and on Binance USD-M
and the chart of each (also after a reload of a link naming one), sees candles and a live update,
toggles overlays, opens the RSI and MACD panes, creates an alert and sees it fire;
screenshots land in test-output/e2e/. This module brings up what it needs: Chromium
from Debian's packages, `npm ci` and `vite build` when the build is missing or stale,
and the whole demo mesh on free ports with its own state directory, started when the test
session begins (see conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ..grpc_helpers import free_port
from .demo_mesh import (
    ADMIN,
    OUTPUT,
    REPO,
    STARTUP_SECONDS,
    get,
    post,
    stop,
    wait_for,
)

FRONTEND = REPO / "frontend"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
BROWSER_SECONDS = 180
# The replayed range: this many whole minutes of the demo's own history, played at 60x.
REPLAY_MINUTES = 4
REPLAY_WAIT_SECONDS = 480


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
def dashboard_url(demo_gateway: str) -> Iterator[str]:
    """Where the browser goes: the gateway when it serves the build, else `vite preview`."""
    _ensure_frontend_built()
    status, body = get(f"{demo_gateway}/")
    if status == 200 and 'id="root"' in body:
        yield demo_gateway
        return
    port = free_port()
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
        wait_for(f"http://127.0.0.1:{port}/", preview, log, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(preview)


def _browser_script(script: str, url: str, *options: str) -> None:
    """Run a frontend/e2e script in Chromium against `url`; its output lands in OUTPUT."""
    _ensure_chromium()
    run = subprocess.run(
        ["node", f"e2e/{script}", "--url", url, "--out", str(OUTPUT), *options],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=BROWSER_SECONDS,
        check=False,
    )
    (OUTPUT / f"{script}.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"{script} failed:\n{run.stdout}\n{run.stderr}"


def test_dashboard_in_chromium_against_demo_mesh_passes_every_step(dashboard_url: str) -> None:
    _browser_script("dashboard.e2e.mjs", dashboard_url)
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
    # The range starts at the first bar the demo committed and spans REPLAY_MINUTES whole
    # minutes that are over (their bars are final and committed), waiting for them if needed.
    deadline = time.monotonic() + REPLAY_WAIT_SECONDS
    # One login: logins are rate limited far below reads.
    login = post(f"{demo_gateway}/api/v1/auth/login", {"username": ADMIN[0], "password": ADMIN[1]})
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
    _browser_script(
        "replay.e2e.mjs",
        dashboard_url,
        "--from",
        datetime.fromtimestamp(start, UTC).strftime(minute),
        "--to",
        datetime.fromtimestamp(now_minute, UTC).strftime(minute),
    )
    assert (OUTPUT / "replay-02-played.png").exists()
