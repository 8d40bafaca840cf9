"""Bars between their three shapes: engine updates, `candles` rows and `tickmesh.v2.Bar`.

Prices and volumes are exact throughout: integer mantissas in the engine, `numeric` in
`candles` (written as binary COPY built from the mantissas, read as decimal.Decimal), plain
decimal strings in `tickmesh.v2.Bar`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain
from typing import NamedTuple

import asyncpg
import numpy as np

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.core.db.copy_binary import (
    NULL,
    PG_EPOCH_US,
    StreamedRows,
    fixed_fields,
    numeric_field,
    numeric_fields,
    text_field,
)
from tickmesh.core.exchanges import exchange_proto
from tickmesh.core.timeframes import from_label
from tickmesh.v2 import market_pb2

# A `candles` row's columns (0011_candle_instrument_ids.sql): the key, then the values.
CANDLE_COLUMNS = (
    "instrument_id",
    "timeframe",
    "time",
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
# What bar_from_record reads besides the instrument's `exchange` and `symbol`, which a reader
# selects from `instruments` (or names itself): every column but the id, and the change id.
SELECT_CANDLE = ", ".join(CANDLE_COLUMNS[1:]) + ", change_id"


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


# The order the rows' fields are written in: the key's instrument id and timeframe first, so
# that one cached prefix per instrument and timeframe is followed by one fixed-size block per
# batch.
CANDLE_COPY_COLUMNS = (
    "instrument_id",
    "timeframe",
    "time",
    *CANDLE_COLUMNS[3:14],  # open ... out_of_order_trades
    "change_id",
    *CANDLE_COLUMNS[14:],  # the two taker-buy volumes, which may be NULL
)
CandleKey = tuple[int, str, int]  # (instrument id, timeframe label, open time in µs)
_INT32_MAX = 2**31 - 1
_NULL_TAKER_BUYS = NULL + NULL
# (instrument id, timeframe label) -> their two fields; few instruments, reused.
_PREFIXES: dict[tuple[int, str], bytes] = {}
_PREFIXES_KEPT = 50_000


class CandleRows(NamedTuple):
    """`candles` rows of one write: each row's binary COPY fields (CANDLE_COPY_COLUMNS order).

    One object per batch, columns rather than a tuple per row: a row costs its bytes only.
    """

    updates: Sequence[BarUpdate]
    change_ids: list[int]
    fields: list[bytes]
    instrument_ids: Sequence[int]

    def keys(self) -> list[CandleKey]:
        """Each row's conflict key (built only to de-duplicate a batch, which is rare)."""
        return [
            (instrument_id, u.timeframe.label, u.open_time_ns // 1000)
            for instrument_id, u in zip(self.instrument_ids, self.updates, strict=True)
        ]


def _prefix(key: tuple[int, str]) -> bytes:
    prefix = _PREFIXES.get(key)
    if prefix is None:
        if len(_PREFIXES) >= _PREFIXES_KEPT:
            _PREFIXES.clear()
        instrument_id, label = key
        prefix = _PREFIXES[key] = struct.pack(">ii", 4, instrument_id) + text_field(label)
    return prefix


def candle_rows(
    updates: Sequence[BarUpdate], change_ids: Sequence[int], instrument_ids: Sequence[int]
) -> CandleRows:
    """The `candles` rows of final or revised bars with their change ids, as binary COPY.

    `instrument_ids` holds each update's instrument id (see instrument_ids.InstrumentIds).

    Prices and volumes go as binary numerics built from their mantissas and scales, exactly,
    a column of the whole batch at a time (see tickmesh.core.db.copy_binary): no Decimal, no
    text for the server to parse. A value beyond int64 (a huge quote volume) sends the
    batch down an exact per-value path.
    """
    try:
        blocks = _fixed_blocks(updates, change_ids)
    except (OverflowError, ValueError):
        blocks = [_row_fields(u, c) for u, c in zip(updates, change_ids, strict=True)]
    prefixes = _PREFIXES
    # Per row only a dict hit and one concatenation: the loop every written candle pays.
    fields = [
        (prefixes.get(key) or _prefix(key)) + block
        for key, block in zip(
            zip(instrument_ids, [u.timeframe.label for u in updates], strict=True),
            blocks,
            strict=True,
        )
    ]
    return CandleRows(updates, list(change_ids), fields, instrument_ids)


# Rows a COPY chunk holds: small enough that the server starts soon, large enough that the
# per-column numpy calls stay a small share of a chunk.
CHUNK_ROWS = 2_000


def streamed_candle_rows(
    updates: Sequence[BarUpdate],
    change_ids: Sequence[int],
    instrument_ids: Sequence[int],
    chunk_rows: int = CHUNK_ROWS,
) -> StreamedRows:
    """The rows of `candle_rows`, built a chunk at a time as COPY sends the ones before."""
    chunks = (
        candle_rows(
            updates[start : start + chunk_rows],
            change_ids[start : start + chunk_rows],
            instrument_ids[start : start + chunk_rows],
        ).fields
        for start in range(0, len(updates), chunk_rows)
    )
    keys = CandleRows(updates, list(change_ids), [], instrument_ids).keys
    return StreamedRows(chunks, len(updates), keys)


def _fixed_blocks(updates: Sequence[BarUpdate], change_ids: Sequence[int]) -> list[bytes]:
    """Every row's fields after the text prefix; OverflowError or ValueError off int64."""
    if not updates:
        return []
    # One tuple per row, chained into one int64 column: fromiter raises OverflowError past int64.
    rows = [
        (u.open_time_ns, u.open, u.high, u.low, u.close, u.volume, u.quote_volume,
         u.trade_count, u.revision, u.duplicate_trades, u.out_of_order_trades,
         u.price_scale, u.quantity_scale)
        for u in updates
    ]  # fmt: skip
    values = np.fromiter(chain.from_iterable(rows), np.int64, 13 * len(rows)).reshape(-1, 13)
    counters = values[:, 8:11]
    if int(np.abs(counters).max()) > _INT32_MAX:
        raise OverflowError("a revision or trade counter does not fit an integer column")
    prices, quantities = values[:, 11], values[:, 12]
    quotes = prices + quantities
    parts = [
        fixed_fields(values[:, 0] // 1000 - PG_EPOCH_US, ">i8"),
        *(numeric_fields(values[:, column], prices) for column in (1, 2, 3, 4)),
        numeric_fields(values[:, 5], quantities),
        numeric_fields(values[:, 6], quotes),
        fixed_fields(values[:, 7], ">i8"),
        fixed_fields([u.vwap for u in updates], ">f8"),
        *(fixed_fields(counters[:, column], ">i4") for column in (0, 1, 2)),
        fixed_fields(np.array(change_ids, dtype=np.int64), ">i8"),
    ]
    buys = [u.taker_buy_volume for u in updates]
    buy_quotes = [u.taker_buy_quote_volume for u in updates]
    known = None not in buys and None not in buy_quotes
    if known:
        parts.append(numeric_fields(np.array(buys, dtype=np.int64), quantities))
        parts.append(numeric_fields(np.array(buy_quotes, dtype=np.int64), quotes))
    block = np.hstack(parts)
    width = block.shape[1]
    data = block.tobytes()
    blocks = [data[start : start + width] for start in range(0, len(data), width)]
    if known:
        return blocks
    # Some rows lack taker-buy volumes (source bars): those fields per row, NULL or not.
    return [fixed + _taker_buys(update) for fixed, update in zip(blocks, updates, strict=True)]


def _taker_buys(update: BarUpdate) -> bytes:
    buy, buy_quote = update.taker_buy_volume, update.taker_buy_quote_volume
    if buy is None and buy_quote is None:
        return _NULL_TAKER_BUYS
    ps, qs = update.price_scale, update.quantity_scale
    return (NULL if buy is None else numeric_field(buy, qs)) + (
        NULL if buy_quote is None else numeric_field(buy_quote, ps + qs)
    )


def _row_fields(update: BarUpdate, change_id: int) -> bytes:
    """One row's fields after the text prefix, value by value (exact for any Python int)."""
    ps, qs = update.price_scale, update.quantity_scale
    return b"".join(
        (
            struct.pack(">iq", 8, update.open_time_ns // 1000 - PG_EPOCH_US),
            *(numeric_field(v, ps) for v in (update.open, update.high, update.low, update.close)),
            numeric_field(update.volume, qs),
            numeric_field(update.quote_volume, ps + qs),
            struct.pack(">iqid", 8, update.trade_count, 8, update.vwap),
            struct.pack(">iiiiii", 4, update.revision, 4, update.duplicate_trades,
                        4, update.out_of_order_trades),
            struct.pack(">iq", 8, change_id),
            _taker_buys(update),
        )
    )  # fmt: skip


def bar_from_record(record: asyncpg.Record) -> market_pb2.Bar:
    """A final `tickmesh.v2.Bar` from a `candles` row selected with SELECT_CANDLE and the
    instrument's `exchange` and `symbol`."""
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
