"""Service processes as a user runs them: bad settings, SIGTERM drain, dependencies down at start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from grpc_health.v1 import health_pb2

from tickmesh.core.settings import SettingsError, load_settings

from .grpc_helpers import free_port, health_status, wait_serving


def _run(module: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TICKMESH_BARS_METRICS_PORT", "not-a-port"),
        ("TICKMESH_BARS_METRICS_PORT", "70000"),
        ("TICKMESH_LOG_LEVEL", "LOUD"),
        ("TICKMESH_DRAIN_SECONDS", "-1"),
    ],
)
def test_service_malformed_setting_exits_2_naming_variable(variable: str, value: str) -> None:
    result = _run("tickmesh.bars", {variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert variable in lines[0]
    assert value in lines[0]


def test_load_settings_bad_value_raises_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tickmesh.gateway.settings import GatewaySettings

    monkeypatch.setenv("TICKMESH_GATEWAY_PORT", "eighty")
    with pytest.raises(SettingsError, match=r"^TICKMESH_GATEWAY_PORT: .*eighty"):
        load_settings(GatewaySettings)


def test_service_database_unreachable_retries_then_exits_1_without_traceback() -> None:
    result = _run(
        "tickmesh.collector",
        {
            "TICKMESH_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none",
            "TICKMESH_STARTUP_RETRY_SECONDS": "2",
            "TICKMESH_COLLECTOR_LISTEN": f"127.0.0.1:{free_port()}",
            "TICKMESH_COLLECTOR_METRICS_PORT": "0",
        },
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("postgresql unreachable (attempt") >= 2
    assert "cannot start: postgresql unreachable after 2s" in result.stderr


async def test_service_sigterm_drains_and_exits_0(database_url: str, redis_url: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickmesh.collector",
        env={
            **os.environ,
            "TICKMESH_DATABASE_URL": database_url,
            "TICKMESH_REDIS_URL": redis_url,
            "TICKMESH_COLLECTOR_LISTEN": address,
            "TICKMESH_COLLECTOR_METRICS_PORT": "0",
            "TICKMESH_DRAIN_SECONDS": "1",
        },
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_serving(address)
        assert await health_status(address) == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        # Alone it exits in about 1 s; the bound is for a loaded CI box (the suite runs a demo
        # mesh beside it), where a Yahoo poll in its worker thread may still be finishing.
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=45)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0
    assert b"grpc draining" in stderr


def test_gateway_static_dir_missing_exits_2_naming_variable() -> None:
    result = _run("tickmesh.gateway", {"TICKMESH_GATEWAY_STATIC_DIR": "/no/such/dashboard"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tickmesh: invalid setting: TICKMESH_GATEWAY_STATIC_DIR: /no/such/dashboard is not a directory"
    ]
