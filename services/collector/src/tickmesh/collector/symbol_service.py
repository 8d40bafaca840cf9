"""SymbolService over gRPC: a thin layer on the symbol registry."""

from __future__ import annotations

import logging

from grpc import aio

from tickmesh.collector.binance.exchange_info import ExchangeInfoClient
from tickmesh.collector.symbol_registry import RegisteredSymbol, SymbolRegistry
from tickmesh.core.errors import InvalidArgument
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.v2 import symbol_service_pb2, symbol_service_pb2_grpc

log = logging.getLogger(__name__)


def _to_proto(symbol: RegisteredSymbol) -> symbol_service_pb2.Symbol:
    return symbol_service_pb2.Symbol(
        symbol=symbol.symbol,
        exchange=symbol.exchange,  # type: ignore[arg-type]
        asset_type=symbol.asset_type,
        active=symbol.active,
        created_at_ns=int(symbol.created_at.timestamp() * 1_000_000) * 1000,
        price_increment=symbol.price_increment,
        quantity_increment=symbol.quantity_increment,
    )


async def fill_increments(
    registry: SymbolRegistry, exchange_info: ExchangeInfoClient, entry: RegisteredSymbol
) -> RegisteredSymbol:
    """The entry with its venue's tick and step size recorded, when the venue answers."""
    found = await exchange_info.increments(entry.exchange, [entry.symbol])
    increments = found.get(entry.symbol)
    if increments is None:
        return entry
    return await registry.set_increments(entry.instrument, increments.price, increments.quantity)


class SymbolServicer(symbol_service_pb2_grpc.SymbolServiceServicer):
    """Serves the registry; domain errors become status codes in the shared interceptor."""

    def __init__(
        self, registry: SymbolRegistry, exchange_info: ExchangeInfoClient | None = None
    ) -> None:
        self._registry = registry
        # None: increments are not looked up here (the collector process passes its client).
        self._exchange_info = exchange_info

    async def ListSymbols(
        self, request: symbol_service_pb2.ListSymbolsRequest, context: aio.ServicerContext
    ) -> symbol_service_pb2.ListSymbolsResponse:
        """List the registered instruments, ordered by exchange, then symbol."""
        symbols = await self._registry.list(request.include_inactive)
        return symbol_service_pb2.ListSymbolsResponse(symbols=[_to_proto(s) for s in symbols])

    async def AddSymbol(
        self, request: symbol_service_pb2.AddSymbolRequest, context: aio.ServicerContext
    ) -> symbol_service_pb2.AddSymbolResponse:
        """Register or reactivate an instrument, with its tick and step size when known."""
        added = await self._registry.add(request.symbol, request.exchange, request.asset_type)
        if not added.price_increment and self._exchange_info is not None:
            # Best effort: a venue that does not answer now is asked again by the collector.
            added = await fill_increments(self._registry, self._exchange_info, added)
        return symbol_service_pb2.AddSymbolResponse(symbol=_to_proto(added))

    async def DeactivateSymbol(
        self, request: symbol_service_pb2.DeactivateSymbolRequest, context: aio.ServicerContext
    ) -> symbol_service_pb2.DeactivateSymbolResponse:
        """Deactivate an instrument (venue and symbol)."""
        try:
            instrument = InstrumentId.from_proto(request.instrument)
        except InstrumentError as error:
            raise InvalidArgument(f"instrument: {error}") from None
        symbol = await self._registry.deactivate(instrument)
        return symbol_service_pb2.DeactivateSymbolResponse(symbol=_to_proto(symbol))
