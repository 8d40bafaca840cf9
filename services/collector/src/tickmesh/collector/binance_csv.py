"""The format of Binance's public trade CSV files (data.binance.vision): trades and aggTrades."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tickmesh.collector.binance.columns import InvalidTradeError, SymbolTradesBuilder
from tickmesh.core.decimals import DecimalValueError
from tickmesh.v2 import market_pb2


class CsvKind(enum.StrEnum):
    """Which Binance public data file: individual trades or aggregate trades."""

    TRADES = "trades"
    AGG_TRADES = "aggTrades"


class ImportFileError(ValueError):
    """A file that is not a Binance trade or aggTrade CSV."""


def _is_bool(text: str) -> bool:
    return text.strip().lower() in ("true", "false")


def is_header(row: Sequence[str]) -> bool:
    """True for a header row (its first column is not a trade id)."""
    return not row[0].strip().isdigit()


def detect_kind(first_row: Sequence[str]) -> CsvKind:
    """Tell trades from aggTrades by a header row or by the columns of a data row."""
    if is_header(first_row):
        names = {name.strip().lower() for name in first_row}
        if "first_trade_id" in names or "agg_trade_id" in names:
            return CsvKind.AGG_TRADES
        if "id" in names and "quote_qty" in names:
            return CsvKind.TRADES
        raise ImportFileError(f"unknown header {list(first_row)}")
    if len(first_row) >= 6 and _is_bool(first_row[5]):
        return CsvKind.TRADES
    if len(first_row) >= 7 and _is_bool(first_row[6]):
        return CsvKind.AGG_TRADES
    raise ImportFileError(f"not a Binance trades or aggTrades row: {list(first_row)}")


def time_ns(value: str) -> int:
    """Epoch nanoseconds of a Binance time column (milliseconds, or microseconds since 2025)."""
    number = int(value)
    if number < 10**14:
        return number * 1_000_000
    if number < 10**17:
        return number * 1_000
    return number


@dataclass(slots=True)
class CsvRun:
    """A chunk of CSV rows as one exact SymbolTrades run, plus the rows refused and why."""

    run: market_pb2.SymbolTrades
    # One "<field>: <reason>" per refused row (a malformed or non-positive value).
    refused: list[str]


def rows_to_run(
    rows: Sequence[Sequence[str]],
    kind: CsvKind,
    exchange: market_pb2.Exchange.ValueType,
    symbol: str,
) -> CsvRun:
    """One exact SymbolTrades run of CSV data rows; a bad row is refused alone, named by field."""
    time_column, maker_column = (4, 5) if kind is CsvKind.TRADES else (5, 6)
    quantity_field = "qty" if kind is CsvKind.TRADES else "quantity"
    builder = SymbolTradesBuilder(
        exchange, symbol, price_field="price", quantity_field=quantity_field
    )
    received = time.time_ns()
    refused: list[str] = []
    for row in rows:
        try:
            count = 1 if kind is CsvKind.TRADES else int(row[4]) - int(row[3]) + 1
            if count < 1:
                raise InvalidTradeError(f"last_trade_id: {row[4]} precedes first_trade_id")
            builder.append(
                int(row[0]),
                row[1].strip(),
                row[2].strip(),
                market_pb2.AGGRESSOR_SIDE_SELL
                if row[maker_column].strip().lower() == "true"
                else market_pb2.AGGRESSOR_SIDE_BUY,
                time_ns(row[time_column]),
                received,
                market_pb2.TRADE_TYPE_MARKET,
                count,
            )
        except (InvalidTradeError, DecimalValueError, OverflowError, ValueError, IndexError) as e:
            refused.append(f"row {row[0] if row else '?'}: {e}")
    return CsvRun(builder.to_proto(), refused)
