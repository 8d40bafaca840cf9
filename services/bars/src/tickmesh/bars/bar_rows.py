"""Bars between their three shapes: engine updates, `candles` rows and `tickmesh.v1.Bar`."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.core.exchanges import exchange_label, exchange_proto
from tickmesh.core.timeframes import from_label
from tickmesh.v1 import market_pb2

CANDLE_COLUMNS = (
    "time",
    "symbol",
    "timeframe",
    "exchange",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "revision",
    "duplicate_trades",
    "out_of_order_trades",
)
SELECT_CANDLE = ", ".join(CANDLE_COLUMNS) + ", change_id"


def ns_to_datetime(time_ns: int) -> datetime:
    """A UTC datetime of a nanosecond timestamp (microsecond precision, as PostgreSQL keeps)."""
    return datetime.fromtimestamp(time_ns // 1000 / 1_000_000, UTC)


def datetime_to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of a timezone-aware datetime, exactly."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def candle_row(update: BarUpdate) -> tuple[object, ...]:
    """The `candles` row of a final or revised bar, in CANDLE_COLUMNS order."""
    return (
        ns_to_datetime(update.open_time_ns),
        update.symbol,
        update.timeframe.label,
        exchange_label(update.exchange),
        update.open,
        update.high,
        update.low,
        update.close,
        update.volume,
        update.quote_volume,
        update.trade_count,
        update.vwap,
        update.revision,
        update.duplicate_trades,
        update.out_of_order_trades,
    )


def bar_from_record(record: asyncpg.Record) -> market_pb2.Bar:
    """A final `tickmesh.v1.Bar` from a `candles` row selected with SELECT_CANDLE."""
    return market_pb2.Bar(
        symbol=record["symbol"],
        exchange=market_pb2.Exchange.ValueType(exchange_proto(record["exchange"])),
        timeframe=market_pb2.Timeframe.ValueType(from_label(record["timeframe"]).proto),
        open_time_ns=datetime_to_ns(record["time"]),
        open=record["open"],
        high=record["high"],
        low=record["low"],
        close=record["close"],
        volume=record["volume"],
        quote_volume=record["quote_volume"],
        trade_count=record["trade_count"],
        vwap=record["vwap"],
        final=True,
        revision=record["revision"],
        change_id=record["change_id"],
        duplicate_trades=record["duplicate_trades"],
        out_of_order_trades=record["out_of_order_trades"],
    )
