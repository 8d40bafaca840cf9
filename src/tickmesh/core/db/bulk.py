"""Bulk idempotent upserts: COPY into a temporary table, then one INSERT … ON CONFLICT."""

from __future__ import annotations

import re
import time
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
    returning: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (self.table, *self.columns, *self.update_expressions, *self.returning):
            _quoted(name)
        missing = set(self.key) - set(self.columns)
        if missing:
            raise ValueError(f"key columns {sorted(missing)} are not in columns")

    def statement(self, staging: str, with_returning: bool = False) -> str:
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
        if with_returning and self.returning:
            guard += f" RETURNING {', '.join(_quoted(c) for c in self.returning)}"
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
    if metrics is not None:
        metrics.db_write_latency.labels(table=spec.table).observe(time.perf_counter() - started)
        metrics.db_rows_written.labels(table=spec.table).inc(written)
    return written


async def _copy_and_merge(conn: Connection, spec: UpsertSpec, rows: Sequence[Sequence[Any]]) -> int:
    staging = f"_stage_{spec.table}"
    async with conn.transaction():
        await _stage(conn, spec, staging, rows)
        status = await conn.execute(spec.statement(staging))
    return int(status.rsplit(" ", 1)[-1])


async def upsert_returning(
    conn: Connection, spec: UpsertSpec, rows: Sequence[Sequence[Any]]
) -> list[asyncpg.Record]:
    """Upsert like `upsert`, returning `spec.returning` of every row written (keys unique per batch)."""
    if not rows:
        return []
    staging = f"_stage_{spec.table}"
    async with conn.transaction():
        await _stage(conn, spec, staging, rows)
        return list(await conn.fetch(spec.statement(staging, with_returning=True)))


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
