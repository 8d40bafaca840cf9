"""The shared gRPC bootstrap: health, reflection, error mapping, metrics and the drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tickmesh.collector.symbol_registry import SymbolRegistry
from tickmesh.collector.symbol_service import SymbolServicer
from tickmesh.core.grpc_server import GrpcServer, ServiceRegistration
from tickmesh.core.metrics import CoreMetrics
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

from .grpc_helpers import health_status

SYMBOL_SERVICE = "tickmesh.v2.SymbolService"
SLOW_SERVICE = "test.Slow"


def _slow_registration(release: asyncio.Event) -> ServiceRegistration:
    async def wait_then_answer(request: bytes, context: aio.ServicerContext) -> bytes:
        await release.wait()
        return b"done"

    def add(servicer: object, server: aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(wait_then_answer)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SLOW_SERVICE, {"Wait": handler}),)
        )

    return ServiceRegistration(SLOW_SERVICE, add, object())


@pytest.fixture
async def symbol_server(db_pool: asyncpg.Pool) -> AsyncIterator[tuple[GrpcServer, CoreMetrics]]:
    metrics = CoreMetrics()
    registration = ServiceRegistration(
        SYMBOL_SERVICE,
        symbol_service_pb2_grpc.add_SymbolServiceServicer_to_server,
        SymbolServicer(SymbolRegistry(db_pool)),
    )
    server = GrpcServer("127.0.0.1:0", [registration], metrics, drain_seconds=2)
    await server.start()
    yield server, metrics
    await server.stop()


async def test_health_overall_and_per_service_answer_serving(
    symbol_server: tuple[GrpcServer, CoreMetrics],
) -> None:
    server, _ = symbol_server
    assert await health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
    assert (
        await health_status(server.address, SYMBOL_SERVICE)
        == health_pb2.HealthCheckResponse.SERVING
    )


async def test_reflection_lists_registered_services(
    symbol_server: tuple[GrpcServer, CoreMetrics],
) -> None:
    server, _ = symbol_server
    async with aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert names == {
        SYMBOL_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_symbol_service_add_list_deactivate_round_trip(
    symbol_server: tuple[GrpcServer, CoreMetrics],
) -> None:
    server, metrics = symbol_server
    async with aio.insecure_channel(server.address) as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        added = await stub.AddSymbol(
            symbol_service_pb2.AddSymbolRequest(
                symbol="ETHUSDT", exchange=market_pb2.EXCHANGE_BINANCE_SPOT, asset_type="crypto"
            )
        )
        assert added.symbol.active
        listed = await stub.ListSymbols(symbol_service_pb2.ListSymbolsRequest())
        assert (market_pb2.EXCHANGE_BINANCE_SPOT, "ETHUSDT") in [
            (s.exchange, s.symbol) for s in listed.symbols
        ]
        await stub.DeactivateSymbol(
            symbol_service_pb2.DeactivateSymbolRequest(
                instrument=market_pb2.Instrument(
                    exchange=market_pb2.EXCHANGE_BINANCE_SPOT, symbol="ETHUSDT"
                )
            )
        )
        active = await stub.ListSymbols(symbol_service_pb2.ListSymbolsRequest())
        everything = await stub.ListSymbols(
            symbol_service_pb2.ListSymbolsRequest(include_inactive=True)
        )
    # The database is shared with other tests' registrations: compare instruments, not symbols.
    spot_eth = (market_pb2.EXCHANGE_BINANCE_SPOT, "ETHUSDT")
    assert spot_eth not in [(s.exchange, s.symbol) for s in active.symbols]
    assert spot_eth in [(s.exchange, s.symbol) for s in everything.symbols]
    method = "/tickmesh.v2.SymbolService/AddSymbol"
    assert metrics.grpc_requests.labels(method=method, code="OK")._value.get() == 1


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (
            symbol_service_pb2.AddSymbolRequest(
                symbol="bad symbol!", exchange=market_pb2.EXCHANGE_BINANCE_SPOT, asset_type="crypto"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "symbol",
        ),
        (
            symbol_service_pb2.AddSymbolRequest(symbol="OK", asset_type="crypto"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "exchange",
        ),
        (
            symbol_service_pb2.AddSymbolRequest(
                symbol="OK", exchange=market_pb2.EXCHANGE_YAHOO, asset_type="bond"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "asset_type",
        ),
    ],
)
async def test_symbol_service_bad_input_maps_to_invalid_argument_naming_field(
    symbol_server: tuple[GrpcServer, CoreMetrics],
    request_: symbol_service_pb2.AddSymbolRequest,
    code: grpc.StatusCode,
    field: str,
) -> None:
    server, _ = symbol_server
    async with aio.insecure_channel(server.address) as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as raised:
            await stub.AddSymbol(request_)
    assert raised.value.code() == code
    assert (raised.value.details() or "").startswith(f"{field}:")


async def test_symbol_service_unknown_symbol_maps_to_not_found(
    symbol_server: tuple[GrpcServer, CoreMetrics],
) -> None:
    server, _ = symbol_server
    async with aio.insecure_channel(server.address) as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as raised:
            await stub.DeactivateSymbol(
                symbol_service_pb2.DeactivateSymbolRequest(
                    instrument=market_pb2.Instrument(
                        exchange=market_pb2.EXCHANGE_BINANCE_USDM, symbol="NEVERSEEN"
                    )
                )
            )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stop_in_flight_call_finishes_before_server_stops() -> None:
    release = asyncio.Event()
    server = GrpcServer("127.0.0.1:0", [_slow_registration(release)], CoreMetrics(), 5.0)
    await server.start()
    async with aio.insecure_channel(server.address) as channel:
        call = channel.unary_unary(f"/{SLOW_SERVICE}/Wait")(b"", timeout=10)
        in_flight = asyncio.ensure_future(call)
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done()
        release.set()
        assert await in_flight == b"done"
    await stopping
