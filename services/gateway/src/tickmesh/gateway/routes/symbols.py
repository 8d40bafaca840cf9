"""`/api/v1/symbols`: the instrument registry, read by anyone signed in, changed by admins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from tickmesh.core.exchanges import exchange_label, exchange_proto
from tickmesh.core.instruments import InstrumentId
from tickmesh.gateway.deps import AdminUser, CurrentUser, ServicesDep, rate_limited
from tickmesh.gateway.problems import (
    FORBIDDEN_RESPONSES,
    NOT_FOUND_RESPONSES,
    PROBLEM_RESPONSES,
)
from tickmesh.gateway.schemas import Instrument, SymbolCreate, SymbolOut
from tickmesh.v2 import symbol_service_pb2

router = APIRouter(
    prefix="/api/v1/symbols",
    tags=["symbols"],
    dependencies=[Depends(rate_limited("api"))],
    responses=PROBLEM_RESPONSES | {503: PROBLEM_RESPONSES[400] | {"description": "Unavailable"}},
)

InstrumentPath = Annotated[Instrument, Path()]


def symbol_out(symbol: symbol_service_pb2.Symbol) -> SymbolOut:
    """The API form of a registry entry (increments as exact strings, null when unknown)."""
    venue = exchange_label(symbol.exchange)
    return SymbolOut(
        instrument=f"{venue}:{symbol.symbol}",
        exchange=venue,
        symbol=symbol.symbol,
        asset_type=symbol.asset_type,
        active=symbol.active,
        created_at=datetime.fromtimestamp(symbol.created_at_ns / 1e9, UTC),
        price_increment=symbol.price_increment or None,
        quantity_increment=symbol.quantity_increment or None,
    )


@router.get("")
async def list_symbols(
    user: CurrentUser,
    services: ServicesDep,
    include_inactive: Annotated[bool, Query()] = False,
) -> list[SymbolOut]:
    """Registered instruments; deactivated ones only when asked."""
    reply = await services.backends.collector.call(
        services.backends.symbols.ListSymbols,
        symbol_service_pb2.ListSymbolsRequest(include_inactive=include_inactive),
    )
    return [symbol_out(symbol) for symbol in reply.symbols]


@router.post("", status_code=status.HTTP_201_CREATED, responses=FORBIDDEN_RESPONSES)
async def add_symbol(body: SymbolCreate, admin: AdminUser, services: ServicesDep) -> SymbolOut:
    """Register an instrument (venue + symbol), or reactivate it (admins only)."""
    reply = await services.backends.collector.call(
        services.backends.symbols.AddSymbol,
        symbol_service_pb2.AddSymbolRequest(
            symbol=body.symbol,
            exchange=exchange_proto(body.exchange),  # type: ignore[arg-type]
            asset_type=body.asset_type,
        ),
    )
    # This replica's WebSockets serve it at once (other replicas on their next miss).
    services.ws_guard.registry.invalidate()
    return symbol_out(reply.symbol)


@router.delete("/{instrument}", responses=FORBIDDEN_RESPONSES | NOT_FOUND_RESPONSES)
async def deactivate_symbol(
    instrument: InstrumentPath, admin: AdminUser, services: ServicesDep
) -> SymbolOut:
    """Stop collecting an instrument; its data is kept (admins only)."""
    reply = await services.backends.collector.call(
        services.backends.symbols.DeactivateSymbol,
        symbol_service_pb2.DeactivateSymbolRequest(
            instrument=InstrumentId.parse(instrument).to_proto()
        ),
    )
    return symbol_out(reply.symbol)
