"""Bulk idempotent upserts: COPY into a temporary table, then one INSERT … ON CONFLICT."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from tickmesh.core.db.copy_binary import BinaryRows, StreamedRows
from tickmesh.core.db.pool import Connection
from tickmesh.core.metrics import CoreMetrics

# Rows as value sequences (or lines of COPY text, see UpsertSpec), or already binary (built
# whole, or chunk by chunk as COPY sends them).
Rows = Sequence[Sequence[Any]] | BinaryRows | StreamedRows
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _quoted(name: str) -> str:
    if _IDENTIFIER.match(name) is None:
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


@dataclass(frozen=True)
class UpsertSpec:
    """Where and how rows go: table, column order, conflict key, what an update overwrites.

    `update_expressions` sets columns to SQL expressions on insert and update alike (e.g. a
    change id from a sequence); `only_if` guards the update (e.g. skip identical rows).
    `text_copy` sends the rows in COPY's text format (see `copy_rows`): for tables of numeric
    columns, whose binary encoding in asyncpg costs several times their text. Only then may a
    row be a `str`: one line already in COPY text form (tab-separated, escaped, \\N for NULL).
    Rows may also come as one `BinaryRows`, already in binary COPY form in `columns` order.
    """

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    update_columns: tuple[str, ...] | None = None
    update_expressions: Mapping[str, str] = field(default_factory=dict)
    only_if: str | None = None
    text_copy: bool = False

    def __post_init__(self) -> None:
        for name in (self.table, *self.columns, *self.update_expressions):
            _quoted(name)
        missing = set(self.key) - set(self.columns)
        if missing:
            raise ValueError(f"key columns {sorted(missing)} are not in columns")

    def staging_table(self) -> str:
        """The session's temporary table these rows are copied into first."""
        # Named by the column list too: two specs of one table must not share a staging shape.
        shape = zlib.crc32(",".join(self.columns).encode())
        return f"_stage_{self.table}_{shape:08x}"

    def statement(self, staging: str) -> str:
        """The INSERT … SELECT … ON CONFLICT statement reading from `staging`."""
        updated = self.update_columns
        if updated is None:
            updated = tuple(c for c in self.columns if c not in self.key)
        targets = [*self.columns, *self.update_expressions]
        sources = [_quoted(c) for c in self.columns] + list(self.update_expressions.values())
        sets = [f"{_quoted(c)} = EXCLUDED.{_quoted(c)}" for c in updated]
        sets += [f"{_quoted(c)} = {expr}" for c, expr in self.update_expressions.items()]
        conflict = ", ".join(_quoted(c) for c in self.key)
        action = f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
        guard = f" WHERE {self.only_if}" if self.only_if and sets else ""
        # Rows in key order touch the primary key's B-tree page by page instead of at random.
        return (
            f"INSERT INTO {_quoted(self.table)} ({', '.join(_quoted(c) for c in targets)}) "
            f"SELECT {', '.join(sources)} FROM {staging} ORDER BY {conflict} "
            f"ON CONFLICT ({conflict}) {action}{guard}"
        )


def last_per_key(spec: UpsertSpec, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Keep the last row of each key: one INSERT … ON CONFLICT may touch a row only once."""
    positions = [spec.columns.index(c) for c in spec.key]
    latest: dict[tuple[Any, ...], Sequence[Any]] = {}
    for row in rows:
        values = row.split("\t") if isinstance(row, str) else row
        latest[tuple(values[p] for p in positions)] = row
    return list(latest.values())


async def upsert(
    conn: Connection,
    spec: UpsertSpec,
    rows: Rows,
    metrics: CoreMetrics | None = None,
) -> int:
    """Upsert `rows` (tuples in `spec.columns` order) in one round of COPY + INSERT; rows written."""
    if not rows:
        return 0
    started = time.perf_counter()
    try:
        written = await _copy_and_merge(conn, spec, rows)
    except asyncpg.CardinalityViolationError:
        # A key appears twice in the batch; rare, so only then pay for de-duplication.
        if isinstance(rows, StreamedRows):
            rows = rows.complete()
        unique = rows.last_per_key() if isinstance(rows, BinaryRows) else last_per_key(spec, rows)
        written = await _copy_and_merge(conn, spec, unique)
    _count(metrics, spec, started, written)
    return written


def _count(metrics: CoreMetrics | None, spec: UpsertSpec, started: float, written: int) -> None:
    if metrics is not None:
        metrics.db_write_latency.labels(table=spec.table).observe(time.perf_counter() - started)
        metrics.db_rows_written.labels(table=spec.table).inc(written)


async def insert_or_upsert(
    conn: Connection,
    spec: UpsertSpec,
    rows: Rows,
    metrics: CoreMetrics | None = None,
) -> int:
    """Write rows that are almost always new: COPY them straight in, else upsert; rows written.

    COPY into the table skips the staging table and the per-row conflict check of
    INSERT … ON CONFLICT, the two largest costs of `upsert`. If any key already exists (or
    repeats in `rows`), the COPY is undone at a savepoint and the rows are upserted instead.
    """
    if spec.update_expressions:
        raise ValueError("COPY cannot apply update_expressions: use upsert")
    if not rows:
        return 0
    started = time.perf_counter()
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            await copy_rows(conn, spec.table, rows, spec.columns, spec.text_copy)
    except asyncpg.UniqueViolationError:
        # Streamed rows: the failed COPY may have stopped early; build the rest for the upsert.
        return await upsert(
            conn, spec, rows.complete() if isinstance(rows, StreamedRows) else rows, metrics
        )
    _count(metrics, spec, started, len(rows))
    return len(rows)


def _escaped(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        text = text.replace("\r", "\\r")
    return text


_NULL = "\\N"


# Rows of one write share few distinct times (a bar's open minute): isoformat() costs a
# microsecond, a lookup a tenth of that.
_TIMESTAMPS: dict[datetime, str] = {}
_TIMESTAMPS_KEPT = 50_000


def _timestamp(value: datetime) -> str:
    text = _TIMESTAMPS.get(value)
    if text is None:
        if value.tzinfo is None:  # the server would read it in its own time zone: go binary
            raise KeyError(value)
        if len(_TIMESTAMPS) >= _TIMESTAMPS_KEPT:
            _TIMESTAMPS.clear()
        text = _TIMESTAMPS[value] = value.isoformat()
    return text


# COPY text form of each value type a row may hold; any other type goes by binary COPY.
_TEXT: dict[type, Callable[[Any], str]] = {
    str: _escaped,
    int: str,
    float: repr,  # nan and inf read back as NaN and Infinity
    bool: lambda value: "t" if value else "f",
    Decimal: str,  # exponent notation ("1.2E+3") is valid numeric input
    datetime: _timestamp,  # "2024-01-01T00:00:00+00:00"
    type(None): lambda _: _NULL,
}


def _text_copy_data(rows: Sequence[Sequence[Any]]) -> bytes | None:
    """Rows in COPY's text format, or None when a value has no text form here."""
    text = _TEXT
    try:
        lines = [
            row if isinstance(row, str) else "\t".join([text[type(value)](value) for value in row])
            for row in rows
        ]
    except KeyError:
        return None
    lines.append("")
    return "\n".join(lines).encode()


async def copy_rows(
    conn: Connection,
    table: str,
    rows: Rows,
    columns: Sequence[str],
    text_format: bool = False,
) -> None:
    """COPY rows into `table`; in text format when asked and every value has a text form.

    asyncpg's binary COPY encodes a Decimal in about a microsecond, so a table of numeric
    columns goes either as text or as `BinaryRow`s its writer encoded itself, sent as they are.
    """
    # Bytes go as a one-item stream: asyncpg reads a BytesIO in a worker thread, 512 KiB a hop
    # (and would take plain bytes for a file name).
    if isinstance(rows, StreamedRows):
        await conn.copy_to_table(
            table, source=rows.data(len(columns)), columns=list(columns), format="binary"
        )
        return
    if isinstance(rows, BinaryRows):
        await conn.copy_to_table(
            table,
            source=_once(rows.data(len(columns))),
            columns=list(columns),
            format="binary",
        )
        return
    data = _text_copy_data(rows) if text_format else None
    if data is None:
        if any(isinstance(row, str) for row in rows):
            raise ValueError("rows in COPY text form need text_format and plain values")
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))
    else:
        await conn.copy_to_table(table, source=_once(data), columns=list(columns), format="text")


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _copy_and_merge(conn: Connection, spec: UpsertSpec, rows: Rows) -> int:
    staging = spec.staging_table()
    async with conn.transaction():
        await _stage(conn, spec, staging, rows)
        status = await conn.execute(spec.statement(staging))
    return int(status.rsplit(" ", 1)[-1])


async def next_sequence_values(conn: Connection, sequence: str, count: int) -> list[int]:
    """`count` fresh values of `sequence` in one round trip (one array, not `count` rows)."""
    if count <= 0:
        return []
    # Values taken before the rows are written let the writer know every row's value
    # without RETURNING, whose per-row records cost more than the whole COPY.
    values: list[int] = await conn.fetchval(
        f"SELECT array_agg(nextval('{_quoted(sequence)}')) FROM generate_series(1, $1)", count
    )
    return values


async def _stage(conn: Connection, spec: UpsertSpec, staging: str, rows: Rows) -> None:
    column_list = ", ".join(_quoted(c) for c in spec.columns)
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS "
        f"SELECT {column_list} FROM {_quoted(spec.table)} WITH NO DATA"
    )
    await conn.execute(f"TRUNCATE {staging}")
    await copy_rows(conn, staging, rows, spec.columns, spec.text_copy)
