"""The symbol registry: the `symbols` table the collector owns, one row per instrument.

An instrument is a venue plus a symbol (`InstrumentId`): BTCUSDT on Binance spot and on
USD-M are two rows, and registering one never touches the other. Each row may carry the
venue's tick and step size (from Binance exchangeInfo), exact as `numeric`.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from tickmesh.core.decimals import DecimalValueError, format_decimal, from_decimal, parse_decimal
from tickmesh.core.errors import InvalidArgument, NotFound
from tickmesh.core.exchanges import exchange_label
from tickmesh.core.instruments import InstrumentError, InstrumentId, check_symbol
from tickmesh.v2 import market_pb2

ASSET_TYPES = ("crypto", "stock", "etf")
_COLUMNS = "symbol, exchange, asset_type, active, created_at, price_increment, quantity_increment"


@dataclass(frozen=True)
class RegisteredSymbol:
    """One row of `symbols`; increments are plain decimal strings, "" when unknown."""

    symbol: str
    exchange: int
    asset_type: str
    active: bool
    created_at: datetime
    price_increment: str = ""
    quantity_increment: str = ""

    @property
    def instrument(self) -> InstrumentId:
        """The venue and symbol."""
        return InstrumentId(self.exchange, self.symbol)

    @property
    def increment_decimals(self) -> tuple[int | None, int | None]:
        """Decimals of the tick size and of the step size (None where unknown)."""
        return _decimals(self.price_increment), _decimals(self.quantity_increment)


def _decimals(increment: str) -> int | None:
    return parse_decimal(increment, "increment")[1] if increment else None


def _text(value: Decimal | None) -> str:
    if value is None:
        return ""
    return format_decimal(*from_decimal(value, "increment"))


def _from_row(row: asyncpg.Record) -> RegisteredSymbol:
    return RegisteredSymbol(
        symbol=row["symbol"],
        exchange=InstrumentId.of(row["exchange"], row["symbol"]).exchange,
        asset_type=row["asset_type"],
        active=row["active"],
        created_at=row["created_at"],
        price_increment=_text(row["price_increment"]),
        quantity_increment=_text(row["quantity_increment"]),
    )


def default_asset_type(exchange: int) -> str:
    """What an instrument of a venue is unless told: crypto on Binance, a stock on Yahoo."""
    return "stock" if exchange == market_pb2.EXCHANGE_YAHOO else "crypto"


def _increment(text: str, field: str) -> Decimal:
    try:
        mantissa, scale = parse_decimal(text, field)
    except DecimalValueError as error:
        raise InvalidArgument(str(error)) from None
    if mantissa <= 0:
        raise InvalidArgument(f"{field}: {text!r} must be positive")
    return Decimal(f"{mantissa}E{-scale}")


class SymbolRegistry:
    """List, add and deactivate instruments; record their tick and step sizes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, include_inactive: bool = False) -> list[RegisteredSymbol]:
        """Instruments ordered by exchange, then symbol; active ones only unless asked."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM symbols WHERE active OR $1 ORDER BY exchange, symbol",
            include_inactive,
        )
        return [_from_row(row) for row in rows]

    async def is_empty(self) -> bool:
        """Whether no instrument was ever registered (active or not)."""
        return bool(await self._pool.fetchval("SELECT NOT EXISTS (SELECT 1 FROM symbols)"))

    async def add(self, symbol: str, exchange: int, asset_type: str = "") -> RegisteredSymbol:
        """Register an instrument, or reactivate it; InvalidArgument naming the bad field.

        Only the row of this venue and symbol is written: the same symbol on another venue
        is another instrument and stays as it is.
        """
        try:
            check_symbol(symbol)
        except InstrumentError as error:
            raise InvalidArgument(f"symbol: {error}") from None
        try:
            label = exchange_label(exchange)
        except ValueError as error:
            raise InvalidArgument(f"exchange: {error}") from None
        asset_type = asset_type or default_asset_type(exchange)
        if asset_type not in ASSET_TYPES:
            raise InvalidArgument(f"asset_type: {asset_type!r} must be one of {ASSET_TYPES}")
        row = await self._pool.fetchrow(
            "INSERT INTO symbols (symbol, exchange, asset_type, active) VALUES ($1, $2, $3, TRUE) "
            "ON CONFLICT (exchange, symbol) DO UPDATE SET "
            "asset_type = EXCLUDED.asset_type, active = TRUE "
            f"RETURNING {_COLUMNS}",
            symbol,
            label,
            asset_type,
        )
        assert row is not None  # INSERT … RETURNING always returns the row
        return _from_row(row)

    async def add_default(self, instruments: builtins.list[InstrumentId]) -> int:
        """Register a watchlist only while the registry is empty; return how many were added."""
        async with self._pool.acquire() as connection, connection.transaction():
            # One transaction under a lock, so two collector shards starting at once add it once.
            await connection.execute("LOCK TABLE symbols IN SHARE ROW EXCLUSIVE MODE")
            if await connection.fetchval("SELECT EXISTS (SELECT 1 FROM symbols)"):
                return 0
            await connection.executemany(
                "INSERT INTO symbols (symbol, exchange, asset_type, active) "
                "VALUES ($1, $2, $3, TRUE) ON CONFLICT (exchange, symbol) DO NOTHING",
                [(i.symbol, i.venue, default_asset_type(i.exchange)) for i in instruments],
            )
        return len(instruments)

    async def set_increments(
        self, instrument: InstrumentId, price_increment: str, quantity_increment: str
    ) -> RegisteredSymbol:
        """Record the venue's tick and step size; NotFound if the instrument is not registered."""
        row = await self._pool.fetchrow(
            "UPDATE symbols SET price_increment = $3, quantity_increment = $4 "
            f"WHERE exchange = $1 AND symbol = $2 RETURNING {_COLUMNS}",
            instrument.venue,
            instrument.symbol,
            _increment(price_increment, "price_increment"),
            _increment(quantity_increment, "quantity_increment"),
        )
        if row is None:
            raise NotFound(f"instrument {instrument} is not registered")
        return _from_row(row)

    async def deactivate(self, instrument: InstrumentId) -> RegisteredSymbol:
        """Stop collecting an instrument (its data stays); NotFound if never registered."""
        row = await self._pool.fetchrow(
            "UPDATE symbols SET active = FALSE WHERE exchange = $1 AND symbol = $2 "
            f"RETURNING {_COLUMNS}",
            instrument.venue,
            instrument.symbol,
        )
        if row is None:
            raise NotFound(f"instrument {instrument} is not registered")
        return _from_row(row)
