"""Bars between their three shapes: engine updates, `candles` rows and `tickmesh.v2.Bar`.

Prices and volumes are exact throughout: integer mantissas in the engine, `numeric` in
`candles` (written as COPY text, read as decimal.Decimal), plain decimal strings in
`tickmesh.v2.Bar`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.core.exchanges import exchange_label, exchange_proto
from tickmesh.core.timeframes import from_label
from tickmesh.v2 import market_pb2

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
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
SELECT_CANDLE = ", ".join(CANDLE_COLUMNS) + ", change_id"
_NULL = "\\N"  # NULL in COPY text


def ns_to_datetime(time_ns: int) -> datetime:
    """A UTC datetime of a nanosecond timestamp (microsecond precision, as PostgreSQL keeps)."""
    return datetime.fromtimestamp(time_ns // 1000 / 1_000_000, UTC)


def datetime_to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of a timezone-aware datetime, exactly."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def decimal_text(value: Decimal) -> str:
    """Write a numeric column's value in plain notation without trailing zeros ("203.143")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class CandleRow(NamedTuple):
    """A `candles` row in COPY text form (CANDLE_COLUMNS order, no change id) and its revision."""

    text: str
    revision: int


# Rows of one commit share few open times; isoformat() costs a microsecond, a lookup a tenth.
_TIMES: dict[int, str] = {}
_TIMES_KEPT = 50_000


def _time_text(time_ns: int) -> str:
    text = _TIMES.get(time_ns)
    if text is None:
        if len(_TIMES) >= _TIMES_KEPT:
            _TIMES.clear()
        text = _TIMES[time_ns] = ns_to_datetime(time_ns).isoformat()
    return text


def candle_row(update: BarUpdate) -> CandleRow:
    """The `candles` row of a final or revised bar, as one line of COPY text.

    A value is written "<mantissa>e-<scale>", which PostgreSQL reads as that numeric exactly:
    no Decimal is built and asyncpg's binary numeric encoder (a microsecond a value, more than
    the rest of the row) is skipped. Symbols and labels never hold tabs or backslashes (see
    tickmesh.core.instruments), so nothing needs escaping.
    """
    ps, qs = update.price_scale, update.quantity_scale
    quote = ps + qs
    taker_buy, taker_buy_quote = update.taker_buy_volume, update.taker_buy_quote_volume
    text = (
        f"{_time_text(update.open_time_ns)}\t{update.symbol}\t{update.timeframe.label}\t"
        f"{exchange_label(update.exchange)}\t{update.open}e-{ps}\t{update.high}e-{ps}\t"
        f"{update.low}e-{ps}\t{update.close}e-{ps}\t{update.volume}e-{qs}\t"
        f"{update.quote_volume}e-{quote}\t{update.trade_count}\t{update.vwap!r}\t"
        f"{update.revision}\t{update.duplicate_trades}\t{update.out_of_order_trades}\t"
        f"{_NULL if taker_buy is None else f'{taker_buy}e-{qs}'}\t"
        f"{_NULL if taker_buy_quote is None else f'{taker_buy_quote}e-{quote}'}"
    )
    return CandleRow(text, update.revision)


def bar_from_record(record: asyncpg.Record) -> market_pb2.Bar:
    """A final `tickmesh.v2.Bar` from a `candles` row selected with SELECT_CANDLE."""
    bar = market_pb2.Bar(
        symbol=record["symbol"],
        exchange=market_pb2.Exchange.ValueType(exchange_proto(record["exchange"])),
        timeframe=market_pb2.Timeframe.ValueType(from_label(record["timeframe"]).proto),
        open_time_ns=datetime_to_ns(record["time"]),
        open=decimal_text(record["open"]),
        high=decimal_text(record["high"]),
        low=decimal_text(record["low"]),
        close=decimal_text(record["close"]),
        volume=decimal_text(record["volume"]),
        quote_volume=decimal_text(record["quote_volume"]),
        trade_count=record["trade_count"],
        vwap=record["vwap"],
        final=True,
        revision=record["revision"],
        change_id=record["change_id"],
        duplicate_trades=record["duplicate_trades"],
        out_of_order_trades=record["out_of_order_trades"],
    )
    # NULL: unknown (source bars, rows stored before tickmesh.v2), so the field stays unset.
    if record["taker_buy_volume"] is not None:
        bar.taker_buy_volume = decimal_text(record["taker_buy_volume"])
    if record["taker_buy_quote_volume"] is not None:
        bar.taker_buy_quote_volume = decimal_text(record["taker_buy_quote_volume"])
    return bar
