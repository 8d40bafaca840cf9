"""SymbolService over gRPC: a thin layer on the symbol registry."""

from __future__ import annotations

from grpc import aio

from tickmesh.collector.symbol_registry import RegisteredSymbol, SymbolRegistry
from tickmesh.v1 import symbol_service_pb2, symbol_service_pb2_grpc


def _to_proto(symbol: RegisteredSymbol) -> symbol_service_pb2.Symbol:
    return symbol_service_pb2.Symbol(
        symbol=symbol.symbol,
        exchange=symbol.exchange,  # type: ignore[arg-type]
        asset_type=symbol.asset_type,
        active=symbol.active,
        created_at_ns=int(symbol.created_at.timestamp() * 1_000_000) * 1000,
    )


class SymbolServicer(symbol_service_pb2_grpc.SymbolServiceServicer):
    """Serves the registry; domain errors become status codes in the shared interceptor."""

    def __init__(self, registry: SymbolRegistry) -> None:
        self._registry = registry

    async def ListSymbols(
        self, request: symbol_service_pb2.ListSymbolsRequest, context: aio.ServicerContext
    ) -> symbol_service_pb2.ListSymbolsResponse:
        """List the registered symbols."""
        symbols = await self._registry.list(request.include_inactive)
        return symbol_service_pb2.ListSymbolsResponse(symbols=[_to_proto(s) for s in symbols])

    async def AddSymbol(
        self, request: symbol_service_pb2.AddSymbolRequest, context: aio.ServicerContext
    ) -> symbol_service_pb2.AddSymbolResponse:
        """Register or reactivate a symbol."""
        added = await self._registry.add(request.symbol, request.exchange, request.asset_type)
        return symbol_service_pb2.AddSymbolResponse(symbol=_to_proto(added))

    async def DeactivateSymbol(
        self, request: symbol_service_pb2.DeactivateSymbolRequest, context: aio.ServicerContext
    ) -> symbol_service_pb2.DeactivateSymbolResponse:
        """Deactivate a symbol."""
        symbol = await self._registry.deactivate(request.symbol)
        return symbol_service_pb2.DeactivateSymbolResponse(symbol=_to_proto(symbol))
