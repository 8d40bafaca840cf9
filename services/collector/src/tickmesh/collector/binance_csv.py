"""The format of Binance's public trade CSV files (data.binance.vision): trades and aggTrades."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence

from tickmesh.v1 import market_pb2


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


def rows_to_run(
    rows: Sequence[Sequence[str]],
    kind: CsvKind,
    exchange: market_pb2.Exchange.ValueType,
    symbol: str,
) -> market_pb2.SymbolTrades:
    """One SymbolTrades run of CSV data rows."""
    time_column, maker_column = (4, 5) if kind is CsvKind.TRADES else (5, 6)
    received = time.time_ns()
    run = market_pb2.SymbolTrades(
        exchange=exchange,
        symbol=symbol,
        trade_ids=[int(row[0]) for row in rows],
        prices=[float(row[1]) for row in rows],
        quantities=[float(row[2]) for row in rows],
        sides=[
            market_pb2.AGGRESSOR_SIDE_SELL
            if row[maker_column].strip().lower() == "true"
            else market_pb2.AGGRESSOR_SIDE_BUY
            for row in rows
        ],
        event_time_ns=[time_ns(row[time_column]) for row in rows],
        receive_time_ns=[received] * len(rows),
    )
    if kind is CsvKind.AGG_TRADES:
        run.trade_counts.extend(int(row[4]) - int(row[3]) + 1 for row in rows)
    return run
