"""The symbol registry: the `symbols` table the collector owns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tickmesh.core.errors import InvalidArgument, NotFound
from tickmesh.core.exchanges import exchange_label, exchange_proto

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9.\-^=]{1,20}$")
ASSET_TYPES = ("crypto", "stock", "etf")


@dataclass(frozen=True)
class RegisteredSymbol:
    """One row of `symbols`."""

    symbol: str
    exchange: int
    asset_type: str
    active: bool
    created_at: datetime


def _from_row(row: asyncpg.Record) -> RegisteredSymbol:
    return RegisteredSymbol(
        symbol=row["symbol"],
        exchange=exchange_proto(row["exchange"]),
        asset_type=row["asset_type"],
        active=row["active"],
        created_at=row["created_at"],
    )


class SymbolRegistry:
    """List, add and deactivate symbols."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, include_inactive: bool = False) -> list[RegisteredSymbol]:
        """Symbols ordered by name, active ones only unless asked."""
        rows = await self._pool.fetch(
            "SELECT symbol, exchange, asset_type, active, created_at FROM symbols "
            "WHERE active OR $1 ORDER BY symbol",
            include_inactive,
        )
        return [_from_row(row) for row in rows]

    async def add(self, symbol: str, exchange: int, asset_type: str) -> RegisteredSymbol:
        """Register a symbol, or reactivate it; InvalidArgument naming the bad field."""
        if SYMBOL_PATTERN.match(symbol) is None:
            raise InvalidArgument(
                f"symbol: {symbol!r} must be 1-20 characters of A-Z, 0-9, '.', '-', '^', '='"
            )
        try:
            label = exchange_label(exchange)
        except ValueError as error:
            raise InvalidArgument(f"exchange: {error}") from None
        if asset_type not in ASSET_TYPES:
            raise InvalidArgument(f"asset_type: {asset_type!r} must be one of {ASSET_TYPES}")
        row = await self._pool.fetchrow(
            "INSERT INTO symbols (symbol, exchange, asset_type, active) VALUES ($1, $2, $3, TRUE) "
            "ON CONFLICT (symbol) DO UPDATE SET exchange = EXCLUDED.exchange, "
            "asset_type = EXCLUDED.asset_type, active = TRUE "
            "RETURNING symbol, exchange, asset_type, active, created_at",
            symbol,
            label,
            asset_type,
        )
        assert row is not None  # INSERT … RETURNING always returns the row
        return _from_row(row)

    async def deactivate(self, symbol: str) -> RegisteredSymbol:
        """Stop collecting a symbol (its data stays); NotFound if it was never registered."""
        row = await self._pool.fetchrow(
            "UPDATE symbols SET active = FALSE WHERE symbol = $1 "
            "RETURNING symbol, exchange, asset_type, active, created_at",
            symbol,
        )
        if row is None:
            raise NotFound(f"symbol {symbol!r} is not registered")
        return _from_row(row)
