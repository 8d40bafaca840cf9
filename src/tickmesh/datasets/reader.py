"""Read a dataset as Arrow record batches: `COPY (SELECT ...) TO STDOUT` per chunk and part.

A chunk is `chunk_rows` bars of one series between two of its bounds (sql.bounds_query), so
memory stays bounded whatever the range, and empty stretches of a range cost nothing. Its
parts (bars, indicators, feature rows) are range scans of their own tables, read on the
reader's connections at once and parsed by pyarrow and numpy on worker threads while the
next chunks arrive. Every chunk is read in read-only REPEATABLE READ transactions on one
exported snapshot, so the whole dataset is one consistent snapshot even on several
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import asyncpg
import numpy as np
import pyarrow as pa

from tickmesh.core.db.pool import Connection
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import TimeframeSpec
from tickmesh.datasets import binary, sql
from tickmesh.datasets.parts import Column, PartParser, align, epoch_us
from tickmesh.datasets.request import DatasetRequest
from tickmesh.datasets.schema import DatasetSchema

DEFAULT_CHUNK_ROWS = 50_000
_T = TypeVar("_T")
_Format = Literal["csv", "binary"]


class HistoryUnavailableError(RuntimeError):
    """The as-first-final mode on a database without the history tables (migrations 0008/0009)."""


class DatasetRangeError(ValueError):
    """A value that the dataset's types cannot hold exactly; the message names the series."""


def _series_args(
    instrument: InstrumentId, timeframe: TimeframeSpec, start: datetime, end: datetime
) -> tuple[str, str, str, datetime, datetime]:
    return (instrument.venue, instrument.symbol, timeframe.label, start, end)


# A chunk: a series and a [start, end) range of its bars' open times.
_Chunk = tuple[InstrumentId, TimeframeSpec, datetime, datetime]


@dataclass
class DatasetReader:
    """An open dataset: its schema, its row count, and its batches (iterate once)."""

    request: DatasetRequest
    schema: DatasetSchema
    total_rows: int
    chunk_rows: int
    _conns: list[Connection]
    _chunks: list[_Chunk]
    _feature_layouts: dict[int, list[str]] = field(default_factory=dict)
    _free: asyncio.Queue[Connection] = field(init=False)

    def __post_init__(self) -> None:
        self._parser = PartParser(self.schema, self._feature_layouts)
        self._bars_query = sql.bars_query(self.schema)
        self._binary_parts = [
            (query, parse)
            for query, parse in (
                (sql.indicators_query(self.schema), self._parser.indicators),
                (sql.features_query(self.schema), self._parser.features),
            )
            if query is not None
        ]
        self._free = asyncio.Queue()
        for conn in self._conns:
            self._free.put_nowait(conn)
        # Chunks in flight: enough to keep every connection busy, and one being read while
        # the caller writes the last (two at least), so memory stays a few chunks.
        parts = 1 + len(self._binary_parts)
        self._ahead = max(2, -(-len(self._conns) // parts))

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of every batch."""
        return self.schema.arrow()

    async def batches(self) -> AsyncIterator[pa.RecordBatch]:
        """Every row, series after series in request order, each in open-time order.

        The next chunks (of this series or the next ones) are read while the caller handles
        this one's batches.
        """
        arrow_schema = self.arrow_schema
        chunks = deque(self._chunks)
        pending: deque[tuple[_Chunk, asyncio.Future[list[Column]]]] = deque()
        try:
            while chunks or pending:
                while chunks and len(pending) < self._ahead:
                    chunk = chunks.popleft()
                    pending.append((chunk, asyncio.ensure_future(self._chunk(chunk))))
                (instrument, timeframe, _, _), future = pending[0]
                columns = await future
                pending.popleft()
                zeros = np.zeros(len(columns[0]), dtype=np.int32)
                keys = [pa.array([str(instrument)]), pa.array([timeframe.label])]
                table = pa.Table.from_arrays(
                    [*(key.take(zeros) for key in keys), *columns], schema=arrow_schema
                )
                for batch in table.to_batches():
                    yield batch
        finally:
            await _stop([future for _, future in pending])

    async def _on_connection(self, work: Callable[[Connection], Awaitable[_T]]) -> _T:
        """`work` on the next free connection of the reader (first come, first served)."""
        conn = await self._free.get()
        try:
            return await work(conn)
        finally:
            self._free.put_nowait(conn)

    async def _part(
        self, query: str, format: _Format, parse: Callable[[bytes], _T], chunk: _Chunk
    ) -> _T:
        parts: list[bytes] = []

        async def collect(data: bytes) -> None:
            parts.append(data)

        instrument, timeframe, start, end = chunk
        args = _series_args(instrument, timeframe, start, end)
        await self._on_connection(
            lambda conn: conn.copy_from_query(query, *args, output=collect, format=format)
        )
        # pyarrow and numpy parse on a worker thread: the loop keeps receiving other parts.
        return await asyncio.to_thread(parse, b"".join(parts))

    async def _chunk(self, chunk: _Chunk) -> list[Column]:
        """One chunk's columns in schema order: its parts read at once, lined up on the bars."""
        bars = asyncio.ensure_future(self._part(self._bars_query, "csv", self._parser.bars, chunk))
        others = [
            asyncio.ensure_future(self._part(query, "binary", parse, chunk))
            for query, parse in self._binary_parts
        ]
        try:
            await asyncio.gather(bars, *others)
        except BaseException as error:
            # The other parts stop too: their connections go back idle, ready to roll back.
            await _stop([bars, *others])
            if isinstance(error, pa.ArrowInvalid | binary.BinaryLayoutError):
                # decimal128(38, 18) refuses a value with more decimals rather than rounding it.
                instrument, timeframe, _, _ = chunk
                raise DatasetRangeError(f"{instrument} {timeframe.label}: {error}") from None
            raise
        columns = bars.result()
        bar_times = epoch_us(columns[0])
        for other in others:
            times, part = other.result()
            columns += align(bar_times, times, part)
        return columns


async def _stop(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel `futures` and wait until they are done (their connections idle again)."""
    for future in futures:
        future.cancel()
    await asyncio.gather(*futures, return_exceptions=True)


async def _feature_names(conn: Connection, request: DatasetRequest) -> list[str]:
    query = sql.feature_names_query(request.as_of)
    names: set[str] = set()
    for instrument, timeframe in request.series():
        rows = await conn.fetch(
            query, *_series_args(instrument, timeframe, request.start, request.end)
        )
        names.update(row["k"] for row in rows)
    return sorted(names)


async def _feature_layouts(conn: Connection) -> dict[int, list[str]]:
    """The names of every feature layout id (a handful: one per feature version)."""
    return {
        row["id"]: row["names"] for row in await conn.fetch("SELECT id, names FROM feature_layouts")
    }


async def _plan(conn: Connection, request: DatasetRequest, chunk_rows: int) -> list[_Chunk]:
    """Every chunk of `request` in order: per series the [start, end) of each `chunk_rows`
    bars (sql.bounds_query)."""
    query = sql.bounds_query(request.as_of, chunk_rows)
    chunks: list[_Chunk] = []
    for instrument, timeframe in request.series():
        rows = await conn.fetch(
            query, *_series_args(instrument, timeframe, request.start, request.end)
        )
        bounds = [row[0] for row in rows]
        ends = [*bounds[1:], request.end] if bounds else []
        chunks += [(instrument, timeframe, s, e) for s, e in zip(bounds, ends, strict=True)]
    return chunks


async def count_rows(conn: Connection, request: DatasetRequest) -> int:
    """The number of rows `request` gives (one per bar)."""
    total = 0
    for instrument, timeframe in request.series():
        count = await conn.fetchval(
            sql.count_query(request.as_of),
            *_series_args(instrument, timeframe, request.start, request.end),
        )
        total += int(count)
    return total


async def _follow(conn: Connection, snapshot: str) -> None:
    # SET TRANSACTION SNAPSHOT must come first in the transaction (pg_dump's technique).
    await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")


@contextlib.asynccontextmanager
async def open_dataset(
    pool: asyncpg.Pool,
    request: DatasetRequest,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    feature_names: list[str] | None = None,
    connections: int = 1,
) -> AsyncIterator[DatasetReader]:
    """Open `request` on `connections` connections of `pool` in one snapshot; the reader inside.

    With more than one connection a chunk's bars, indicators and features are read at once,
    each connection in a transaction on the first one's exported snapshot. Feature columns
    are `feature_names`, or by default the names stored for the range.
    """
    async with contextlib.AsyncExitStack() as stack:
        conn = await stack.enter_async_context(pool.acquire())
        await stack.enter_async_context(
            conn.transaction(isolation="repeatable_read", readonly=True)
        )
        conns: list[Connection] = [conn]
        if connections > 1:
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            for _ in range(connections - 1):
                other = await stack.enter_async_context(pool.acquire())
                await stack.enter_async_context(
                    other.transaction(isolation="repeatable_read", readonly=True)
                )
                await _follow(other, snapshot)
                conns.append(other)
        for each in conns:
            # Bar times are written with their offset; "+00" is what pyarrow reads as UTC.
            await each.execute("SET LOCAL TimeZone = 'UTC'")
        try:
            if feature_names is None:
                feature_names = await _feature_names(conn, request) if request.features else []
            total = await count_rows(conn, request)
            chunks = await _plan(conn, request, chunk_rows)
        except asyncpg.UndefinedTableError as error:
            raise HistoryUnavailableError(
                f"{error}: this database keeps no revision history yet (migrations 0008, 0009)"
            ) from None
        schema = DatasetSchema.of(request, feature_names)
        layouts = await _feature_layouts(conn) if request.features else {}
        yield DatasetReader(request, schema, total, chunk_rows, conns, chunks, layouts)
