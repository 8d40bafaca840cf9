"""`/api/v1/symbols`: the registry, read by anyone signed in, changed by admins (over gRPC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from tickmesh.core.exchanges import exchange_label, exchange_proto
from tickmesh.gateway.deps import AdminUser, CurrentUser, ServicesDep, rate_limited
from tickmesh.gateway.problems import PROBLEM_RESPONSES
from tickmesh.gateway.schemas import SYMBOL_PATTERN, SymbolCreate, SymbolOut
from tickmesh.v1 import symbol_service_pb2

router = APIRouter(
    prefix="/api/v1/symbols",
    tags=["symbols"],
    dependencies=[Depends(rate_limited("api"))],
    responses=PROBLEM_RESPONSES | {503: PROBLEM_RESPONSES[400] | {"description": "Unavailable"}},
)

SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])]


def symbol_out(symbol: symbol_service_pb2.Symbol) -> SymbolOut:
    """The API form of a registry entry."""
    return SymbolOut(
        symbol=symbol.symbol,
        exchange=exchange_label(symbol.exchange),
        asset_type=symbol.asset_type,
        active=symbol.active,
        created_at=datetime.fromtimestamp(symbol.created_at_ns / 1e9, UTC),
    )


@router.get("")
async def list_symbols(
    user: CurrentUser,
    services: ServicesDep,
    include_inactive: Annotated[bool, Query()] = False,
) -> list[SymbolOut]:
    """Registered symbols by name; deactivated ones only when asked."""
    reply = await services.backends.collector.call(
        services.backends.symbols.ListSymbols,
        symbol_service_pb2.ListSymbolsRequest(include_inactive=include_inactive),
    )
    return [symbol_out(symbol) for symbol in reply.symbols]


@router.post("", status_code=status.HTTP_201_CREATED)
async def add_symbol(body: SymbolCreate, admin: AdminUser, services: ServicesDep) -> SymbolOut:
    """Register a symbol, or reactivate it (admins only)."""
    reply = await services.backends.collector.call(
        services.backends.symbols.AddSymbol,
        symbol_service_pb2.AddSymbolRequest(
            symbol=body.symbol,
            exchange=exchange_proto(body.exchange),  # type: ignore[arg-type]
            asset_type=body.asset_type,
        ),
    )
    return symbol_out(reply.symbol)


@router.delete("/{symbol}")
async def deactivate_symbol(
    symbol: SymbolPath, admin: AdminUser, services: ServicesDep
) -> SymbolOut:
    """Stop collecting a symbol; its data is kept (admins only)."""
    reply = await services.backends.collector.call(
        services.backends.symbols.DeactivateSymbol,
        symbol_service_pb2.DeactivateSymbolRequest(symbol=symbol),
    )
    return symbol_out(reply.symbol)
