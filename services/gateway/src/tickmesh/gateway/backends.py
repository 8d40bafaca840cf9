"""The gRPC services the gateway calls: one channel each, errors mapped to domain errors."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tickmesh.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_of
from tickmesh.core.tls import TlsMaterial
from tickmesh.v2 import (
    analytics_service_pb2_grpc,
    bar_service_pb2_grpc,
    symbol_service_pb2_grpc,
)

T = TypeVar("T")

_DOMAIN_ERROR_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """One gRPC service's health as seen from the gateway."""

    status: str
    latency_ms: float
    detail: str | None = None


class Backend:
    """One gRPC service: its address, channel and the call wrapper that maps failures."""

    def __init__(
        self, name: str, address: str, timeout_seconds: float, tls: TlsMaterial | None = None
    ) -> None:
        self.name = name
        self.address = address
        self.timeout_seconds = timeout_seconds
        self.channel: aio.Channel = open_channel(address, tls=tls)

    async def call(self, method: Callable[..., Awaitable[T]], request: object) -> T:
        """Call a unary method with the deadline; DomainError (503 when down) on failure."""
        try:
            return await method(request, timeout=self.timeout_seconds)
        except aio.AioRpcError as error:
            raise self.domain_error(error) from None

    def domain_error(self, error: aio.AioRpcError) -> DomainError:
        """The domain error a failed call of this backend stands for."""
        code = error.code()
        mapped = _DOMAIN_ERROR_BY_CODE.get(code)
        if mapped is not None:
            return mapped(error.details() or code.name.lower())
        # UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, …: the backend cannot serve.
        return Unavailable(f"{self.name} service unavailable at {self.address} ({code.name})")

    async def health(self) -> BackendHealth:
        """grpc.health.v1 Check of the whole server, with its round-trip time."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        started = time.perf_counter()
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=min(self.timeout_seconds, 2.0)
            )
        except aio.AioRpcError as error:
            latency = (time.perf_counter() - started) * 1000
            return BackendHealth("unreachable", latency, error.code().name)
        latency = (time.perf_counter() - started) * 1000
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return BackendHealth(status.lower(), latency)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


class BarShard(Backend):
    """One bar service shard and its BarService stub."""

    def __init__(
        self, name: str, address: str, timeout_seconds: float, tls: TlsMaterial | None = None
    ) -> None:
        super().__init__(name, address, timeout_seconds, tls)
        self.stub = bar_service_pb2_grpc.BarServiceStub(self.channel)


class AnalyticsShard(Backend):
    """One analytics service shard and its AnalyticsService stub."""

    def __init__(
        self, name: str, address: str, timeout_seconds: float, tls: TlsMaterial | None = None
    ) -> None:
        super().__init__(name, address, timeout_seconds, tls)
        self.stub = analytics_service_pb2_grpc.AnalyticsServiceStub(self.channel)


class Backends:
    """The collector (symbols), every bar shard and every analytics shard."""

    def __init__(
        self,
        collector_address: str,
        bar_shard_addresses: Sequence[str],
        analytics_shard_addresses: Sequence[str],
        timeout_seconds: float,
        tls: TlsMaterial | None = None,
    ) -> None:
        # Every backend admits the gateway by its certificate (`tls`), when the mesh has TLS.
        self.collector = Backend("collector", collector_address, timeout_seconds, tls)
        # Health lists "bars" when there is one shard, "bars-<i>" for each of several.
        count = len(bar_shard_addresses)
        self.bar_shards = tuple(
            BarShard("bars" if count == 1 else f"bars-{index}", address, timeout_seconds, tls)
            for index, address in enumerate(bar_shard_addresses)
        )
        count = len(analytics_shard_addresses)
        self.analytics_shards = tuple(
            AnalyticsShard(
                "analytics" if count == 1 else f"analytics-{index}", address, timeout_seconds, tls
            )
            for index, address in enumerate(analytics_shard_addresses)
        )
        self.symbols = symbol_service_pb2_grpc.SymbolServiceStub(self.collector.channel)

    def bar_shard(self, instrument: InstrumentId) -> BarShard:
        """The bar shard that owns `instrument` (crc32 of its text form mod the shard count)."""
        return self.bar_shards[shard_of(instrument, len(self.bar_shards))]

    def analytics_shard(self, instrument: InstrumentId) -> AnalyticsShard:
        """The analytics shard that computes and streams `instrument` (the bar shards' rule)."""
        return self.analytics_shards[shard_of(instrument, len(self.analytics_shards))]

    def all(self) -> tuple[Backend, ...]:
        """Every backend, in a stable order."""
        return (self.collector, *self.bar_shards, *self.analytics_shards)

    async def close(self) -> None:
        """Close every channel."""
        for backend in self.all():
            await backend.close()
