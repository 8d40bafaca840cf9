"""Bulk idempotent upserts: COPY into a temporary table, then one INSERT … ON CONFLICT."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tickmesh.core.db.pool import Connection
from tickmesh.core.metrics import CoreMetrics

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
    """

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    update_columns: tuple[str, ...] | None = None
    update_expressions: Mapping[str, str] = field(default_factory=dict)
    only_if: str | None = None

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
        latest[tuple(row[p] for p in positions)] = row
    return list(latest.values())


async def upsert(
    conn: Connection,
    spec: UpsertSpec,
    rows: Sequence[Sequence[Any]],
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
        written = await _copy_and_merge(conn, spec, last_per_key(spec, rows))
    _count(metrics, spec, started, written)
    return written


def _count(metrics: CoreMetrics | None, spec: UpsertSpec, started: float, written: int) -> None:
    if metrics is not None:
        metrics.db_write_latency.labels(table=spec.table).observe(time.perf_counter() - started)
        metrics.db_rows_written.labels(table=spec.table).inc(written)


async def insert_or_upsert(
    conn: Connection,
    spec: UpsertSpec,
    rows: Sequence[Sequence[Any]],
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
            await conn.copy_records_to_table(spec.table, records=rows, columns=list(spec.columns))
    except asyncpg.UniqueViolationError:
        return await upsert(conn, spec, rows, metrics)
    _count(metrics, spec, started, len(rows))
    return len(rows)


async def _copy_and_merge(conn: Connection, spec: UpsertSpec, rows: Sequence[Sequence[Any]]) -> int:
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


async def _stage(
    conn: Connection, spec: UpsertSpec, staging: str, rows: Sequence[Sequence[Any]]
) -> None:
    column_list = ", ".join(_quoted(c) for c in spec.columns)
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS "
        f"SELECT {column_list} FROM {_quoted(spec.table)} WITH NO DATA"
    )
    await conn.execute(f"TRUNCATE {staging}")
    await conn.copy_records_to_table(staging, records=rows, columns=list(spec.columns))
