"""Item 1 of issue 13: mutual TLS inside the mesh, and each server admits only its callers.

Real service processes on loopback with certificates from `tickmesh certs`: an unknown caller
cannot publish trades, only the gateway edits the registry, readers read but never write.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tickmesh.collector.simulator import ExchangeSimulator, Market, SimulatorConfig
from tickmesh.v2 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    market_pb2,
    symbol_service_pb2,
    symbol_service_pb2_grpc,
)

from ..grpc_helpers import free_port, health_status
from ..mesh_processes import ServiceProcess, simulator_urls
from ..tls_helpers import TestPki

# Generous: two cores shared by several test runs; these tests are about who may call, not speed.
CALL_SECONDS = 30
BATCH = market_pb2.TradeBatch(
    stream_id="forged",
    sequence=1,
    trades=[
        market_pb2.SymbolTrades(
            exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
            symbol="BTCUSDT",
            trade_ids=[1],
            prices=[1],
            quantities=[1],
            sides=[market_pb2.AGGRESSOR_SIDE_BUY],
            event_time_ns=[1_700_000_000_000_000_000],
        )
    ],
)
GET_BARS = bar_service_pb2.GetBarsRequest(
    instrument=market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_SPOT, symbol="BTCUSDT"),
    timeframe=market_pb2.TIMEFRAME_1M,
)
ADD_SYMBOL = symbol_service_pb2.AddSymbolRequest(
    symbol="BTCUSDT", exchange=market_pb2.EXCHANGE_BINANCE_SPOT, asset_type="crypto"
)
DEACTIVATE_SYMBOL = symbol_service_pb2.DeactivateSymbolRequest(
    instrument=market_pb2.Instrument(exchange=market_pb2.EXCHANGE_BINANCE_SPOT, symbol="BTCUSDT")
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A CA and one certificate per role, as `tickmesh certs` makes them."""
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def bars(
    pki: TestPki, module_database_url: str, module_redis_url: str
) -> AsyncIterator[ServiceProcess]:
    """A bar service with its certificate, a plaintext health listener, in development."""
    process = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": module_database_url,
            "TICKMESH_REDIS_URL": module_redis_url,
            "TICKMESH_GRPC_HEALTH_LISTEN": f"127.0.0.1:{free_port()}",
        },
        pki,
    )
    await process.start(within_seconds=20)
    yield process
    await process.stop()


async def _publish(channel: aio.Channel) -> int:
    async def requests() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        yield ingest_service_pb2.PublishRequest(batch=BATCH)

    acked = 0
    stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
    async for response in stub.Publish(requests(), timeout=CALL_SECONDS):
        acked = max(acked, response.acked_sequence)
    return acked


async def _publish_refusal(channel: aio.Channel) -> tuple[grpc.StatusCode, str]:
    """The status and details a Publish stream ends with when the server refuses it.

    A refusal comes before the server reads a message. A client that writes while it is on
    its way can have grpc replace the server's status with INTERNAL ("Failed execute_batch"),
    so this opens the stream and reads its status without writing.
    """
    call = ingest_service_pb2_grpc.IngestServiceStub(channel).Publish(timeout=CALL_SECONDS)
    return await call.code(), await call.details()


async def test_bars_caller_without_client_cert_cannot_publish(
    bars: ServiceProcess, pki: TestPki, tmp_path: Path
) -> None:
    stranger = TestPki(tmp_path / "another-ca")  # right role names, wrong CA
    channels = {
        "plaintext": aio.insecure_channel(bars.address),
        "no client cert": pki.channel_without_client_cert(bars.address),
        "another CA's collector": aio.secure_channel(
            bars.address,
            grpc.ssl_channel_credentials(
                root_certificates=pki.material("collector").ca,
                private_key=stranger.material("collector").key,
                certificate_chain=stranger.material("collector").cert,
            ),
        ),
    }
    for name, channel in channels.items():
        async with channel:
            with pytest.raises(aio.AioRpcError) as refused:
                await _publish(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, name


async def test_bars_collector_and_importer_certs_publish(
    bars: ServiceProcess, pki: TestPki
) -> None:
    for role in ("collector", "importer"):
        async with pki.channel(bars.address, role) as channel:
            assert await _publish(channel) == 1


async def test_bars_reader_cert_gets_bars_but_cannot_publish(
    bars: ServiceProcess, pki: TestPki
) -> None:
    async with pki.channel(bars.address, "reader") as channel:
        await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(GET_BARS, timeout=CALL_SECONDS)
        code, details = await _publish_refusal(channel)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "reader" in details
    assert "tickmesh.v2.IngestService" in details
    denied = await bars.metric(
        "tickmesh_grpc_server_denied_total",
        'role="reader",service="tickmesh.v2.IngestService"',
    )
    assert denied >= 1


async def test_bars_reflection_on_in_development_over_tls(
    bars: ServiceProcess, pki: TestPki
) -> None:
    async with pki.channel(bars.address, "reader") as channel:
        assert "tickmesh.v2.BarService" in await _reflected_services(channel)


async def test_bars_health_listener_is_plaintext_and_health_only(bars: ServiceProcess) -> None:
    listener = bars._environment["TICKMESH_GRPC_HEALTH_LISTEN"]
    assert await health_status(listener) == health_pb2.HealthCheckResponse.SERVING
    async with aio.insecure_channel(listener) as channel:
        assert (await _publish_refusal(channel))[0] == grpc.StatusCode.UNIMPLEMENTED
        assert await _reflection_status(channel) == grpc.StatusCode.UNIMPLEMENTED


async def _reflected_services(channel: aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(requests(), timeout=CALL_SECONDS):
        return [s.name for s in response.list_services_response.service]
    return []


async def _reflection_status(channel: aio.Channel) -> grpc.StatusCode:
    """How a server answers the reflection call before any request is written.

    A refused call must be read this way: a request written while the server's refusal is
    in flight fails to send, and grpc.aio then reports INTERNAL instead of the server's code.
    """
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        timeout=CALL_SECONDS
    )
    # A refusal is a trailers-only answer: it ends the call, initial metadata included.
    await call.initial_metadata()
    return await call.code()


async def test_bars_reflection_off_in_production(
    pki: TestPki, module_database_url: str, module_redis_url: str
) -> None:
    process = ServiceProcess(
        "bars",
        {
            "TICKMESH_DATABASE_URL": module_database_url,
            "TICKMESH_REDIS_URL": module_redis_url,
            "TICKMESH_ENVIRONMENT": "production",
        },
        pki,
    )
    await process.start(within_seconds=20)
    try:
        async with pki.channel(process.address, "reader") as channel:
            refused = await _reflection_status(channel)
    finally:
        await process.stop()
    assert refused == grpc.StatusCode.UNIMPLEMENTED


@pytest.fixture
async def collector(
    pki: TestPki, module_database_url: str, module_redis_url: str
) -> AsyncIterator[ServiceProcess]:
    """A collector with its certificate, following the exchange simulator."""
    config = SimulatorConfig(symbols=["BTCUSDT"], seed=1, random_walk_markets=(Market.SPOT,))
    async with ExchangeSimulator(config) as sim:
        process = ServiceProcess(
            "collector",
            {
                "TICKMESH_DATABASE_URL": module_database_url,
                "TICKMESH_REDIS_URL": module_redis_url,
                "TICKMESH_BARS_ADDRESS": f"127.0.0.1:{free_port()}",
                **simulator_urls(sim),
            },
            pki,
        )
        await process.start(within_seconds=20)
        yield process
        await process.stop()


async def test_collector_cert_cannot_add_or_deactivate_symbols(
    collector: ServiceProcess, pki: TestPki
) -> None:
    async with pki.channel(collector.address, "collector") as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        for call, request in (
            (stub.AddSymbol, ADD_SYMBOL),
            (stub.DeactivateSymbol, DEACTIVATE_SYMBOL),
        ):
            with pytest.raises(aio.AioRpcError) as refused:
                await call(request, timeout=CALL_SECONDS)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_gateway_cert_adds_and_deactivates_symbols(
    collector: ServiceProcess, pki: TestPki
) -> None:
    async with pki.channel(collector.address, "gateway") as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        await stub.AddSymbol(ADD_SYMBOL, timeout=CALL_SECONDS)
        await stub.DeactivateSymbol(DEACTIVATE_SYMBOL, timeout=CALL_SECONDS)


def _start_without(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TICKMESH_TLS_DIR", "TICKMESH_GRPC_INSECURE")
    }
    return subprocess.run(
        [sys.executable, "-m", "tickmesh.bars"],
        env={
            **environment,
            **variables,
            "TICKMESH_BARS_LISTEN": f"127.0.0.1:{free_port()}",
            "TICKMESH_BARS_METRICS_PORT": "0",
            # A start that got past the check would wait for this database; fail fast instead.
            "TICKMESH_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none",
            "TICKMESH_STARTUP_RETRY_SECONDS": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({}, "TICKMESH_TLS_DIR"),
        (
            {"TICKMESH_GRPC_INSECURE": "true", "TICKMESH_ENVIRONMENT": "production"},
            "TICKMESH_GRPC_INSECURE",
        ),
    ],
)
def test_service_without_tls_settings_refuses_to_start(
    variables: dict[str, str], named: str
) -> None:
    result = _start_without(variables)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert named in lines[0]


async def test_tickmesh_run_serves_tls_and_refuses_plaintext(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    bars = f"127.0.0.1:{free_port()}"
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TICKMESH_TLS_DIR", "TICKMESH_GRPC_INSECURE")
        and not k.startswith("TICKMESH_BARS_")
    } | {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_BARS_LISTEN": bars,
        "TICKMESH_BARS_ADDRESS": bars,
        "TICKMESH_BARS_METRICS_PORT": "0",
        "TICKMESH_DRAIN_SECONDS": "1",
    }
    tickmesh = Path(sys.executable).parent / "tickmesh"
    process = await asyncio.create_subprocess_exec(
        str(tickmesh),
        "run",
        "--state-dir",
        str(tmp_path),
        "--service",
        "bars",
        env=environment,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        reader = tmp_path / "tls" / "reader"
        for _ in range(300):
            if (reader / "tls.key").exists():
                break
            await asyncio.sleep(0.1)
        credentials = TestPki(tmp_path / "tls", issue_certificates=False)
        serving = False
        for _ in range(300):
            try:
                status = await health_status(
                    bars, credentials=credentials.material("reader").channel_credentials()
                )
                serving = status == health_pb2.HealthCheckResponse.SERVING
            except (aio.AioRpcError, OSError):
                pass
            if serving:
                break
            await asyncio.sleep(0.1)
        assert serving, "tickmesh run's bar service did not answer over TLS"
        with pytest.raises(aio.AioRpcError) as refused:
            await health_status(bars)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0
