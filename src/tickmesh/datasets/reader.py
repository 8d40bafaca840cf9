"""Read a dataset as Arrow record batches: `COPY (SELECT ...) TO STDOUT` per chunk.

A chunk is the next `chunk_rows` bars of one series (keyset paging on open time), so memory
stays bounded whatever the range, and empty stretches of a range cost nothing. Every chunk is
read in read-only REPEATABLE READ transactions on one exported snapshot, so the whole dataset
is one consistent snapshot even when several connections read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from tickmesh.core.db.pool import Connection
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import TimeframeSpec
from tickmesh.datasets import binary, sql
from tickmesh.datasets.request import DatasetRequest
from tickmesh.datasets.schema import DatasetSchema

DEFAULT_CHUNK_ROWS = 50_000
_MICROSECOND = timedelta(microseconds=1)
Parts: TypeAlias = "list[pa.Array[Any]] | list[pa.ChunkedArray[Any]]"
Column: TypeAlias = "pa.Array[Any] | pa.ChunkedArray[Any]"
# pyarrow parses a chunk's CSV in blocks of this size, on its own threads.
_BLOCK_BYTES = 8 << 20


class HistoryUnavailableError(RuntimeError):
    """The as-first-final mode on a database without the history tables (migrations 0008/0009)."""


class DatasetRangeError(ValueError):
    """A value that the dataset's types cannot hold exactly; the message names the series."""


def _series_args(
    instrument: InstrumentId, timeframe: TimeframeSpec, start: datetime, end: datetime
) -> tuple[str, str, str, datetime, datetime]:
    return (instrument.venue, instrument.symbol, timeframe.label, start, end)


@dataclass
class DatasetReader:
    """An open dataset: its schema, its row count, and its batches (iterate once)."""

    request: DatasetRequest
    schema: DatasetSchema
    total_rows: int
    chunk_rows: int
    _conns: list[Connection]

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of every batch."""
        return self.schema.arrow()

    async def batches(self) -> AsyncIterator[pa.RecordBatch]:
        """Every row, series after series in request order, each in open-time order.

        The next chunk of a series is read while the caller handles this one's batches.
        """
        arrow_schema = self.arrow_schema
        for instrument, timeframe in self.request.series():
            keys = (pa.array([str(instrument)]), pa.array([timeframe.label]))
            pending: asyncio.Future[list[Column]] | None = asyncio.ensure_future(
                self._chunk(instrument, timeframe, self.request.start)
            )
            try:
                while pending is not None:
                    columns = await pending
                    pending = None
                    rows = len(columns[0])
                    if rows == self.chunk_rows:
                        # Open times are unique per series and stored to the microsecond.
                        start = columns[0][-1].as_py() + _MICROSECOND
                        pending = asyncio.ensure_future(self._chunk(instrument, timeframe, start))
                    if rows == 0:
                        break
                    zeros = np.zeros(rows, dtype=np.int32)
                    table = pa.Table.from_arrays(
                        [keys[0].take(zeros), keys[1].take(zeros), *columns], schema=arrow_schema
                    )
                    for batch in table.to_batches():
                        yield batch
            finally:
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending

    async def _copy(
        self,
        conn: Connection,
        query: str,
        format: Literal["csv", "binary", "text"],
        series: tuple[InstrumentId, TimeframeSpec, datetime],
    ) -> bytes:
        parts: list[bytes] = []

        async def collect(data: bytes) -> None:
            parts.append(data)

        instrument, timeframe, start = series
        await conn.copy_from_query(
            query,
            *_series_args(instrument, timeframe, start, self.request.end),
            output=collect,
            format=format,
        )
        return b"".join(parts)

    def _parse_bars(self, text: bytes) -> list[pa.ChunkedArray[Any]]:
        if not text:
            return [pa.chunked_array([], type=f.type) for f in self.schema.bar_fields()]
        table = pa_csv.read_csv(
            io.BytesIO(text), read_options=self._read, convert_options=self._convert
        )
        return list(table.columns)

    def _parse_features(self, lines: bytes) -> list[pa.ChunkedArray[Any]]:
        if not lines:
            return [pa.chunked_array([], type=f.type) for f in self.schema.feature_fields()]
        table = pa_json.read_json(io.BytesIO(lines), parse_options=self._json)
        return [table.column(name) for name in self.schema.features or ()]

    async def _chunk(
        self, instrument: InstrumentId, timeframe: TimeframeSpec, start: datetime
    ) -> list[pa.Array[Any] | pa.ChunkedArray[Any]]:
        """The next chunk's columns: its COPYs run on the reader's connections at once, and
        pyarrow parses each on a worker thread while the others still arrive."""
        series = (instrument, timeframe, start)
        jobs: list[tuple[str, Literal["csv", "binary", "text"], Callable[[bytes], Parts]]] = [
            (self._bars_query, "csv", self._parse_bars)
        ]
        if self._analytics_query is not None:
            fields = self.schema.analytics_fields()
            jobs.append((self._analytics_query, "binary", lambda d: binary.to_arrow(d, fields)))
        if self._features_query is not None:
            jobs.append((self._features_query, "text", self._parse_features))
        results: list[Parts] = [[] for _ in jobs]

        async def run(first: int) -> None:
            conn = self._conns[first]
            for index in range(first, len(jobs), len(self._conns)):
                query, format, parse = jobs[index]
                data = await self._copy(conn, query, format, series)
                results[index] = await asyncio.to_thread(parse, data)

        try:
            await asyncio.gather(*(run(k) for k in range(min(len(jobs), len(self._conns)))))
        except (pa.ArrowInvalid, binary.BinaryLayoutError) as error:
            # decimal128(38, 18) refuses a value with more decimals rather than rounding it.
            raise DatasetRangeError(f"{instrument} {timeframe.label}: {error}") from None
        columns = [column for part in results for column in part]
        if any(len(column) != len(columns[0]) for column in columns):
            raise DatasetRangeError(f"{instrument} {timeframe.label}: bars changed while read")
        return columns

    def __post_init__(self) -> None:
        fields = self.schema.bar_fields()
        self._bars_query = sql.bars_query(self.schema, self.chunk_rows)
        self._analytics_query = sql.analytics_query(self.schema, self.chunk_rows)
        self._features_query = sql.features_query(self.schema, self.chunk_rows)
        # Names absent from a row are null; names not in the schema are left out.
        self._json = pa_json.ParseOptions(
            explicit_schema=pa.schema([(n, pa.float64()) for n in self.schema.features or ()]),
            unexpected_field_behavior="ignore",
        )
        self._read = pa_csv.ReadOptions(
            column_names=[f.name for f in fields], block_size=_BLOCK_BYTES
        )
        self._convert = pa_csv.ConvertOptions(column_types={f.name: f.type for f in fields})


async def _feature_names(conn: Connection, request: DatasetRequest) -> list[str]:
    query = sql.feature_names_query(request.as_of)
    names: set[str] = set()
    for instrument, timeframe in request.series():
        rows = await conn.fetch(
            query, *_series_args(instrument, timeframe, request.start, request.end)
        )
        names.update(row["k"] for row in rows)
    return sorted(names)


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
        # Bar times are written with their offset; "+00" is what pyarrow reads as UTC.
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
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
        try:
            if feature_names is None:
                feature_names = await _feature_names(conn, request) if request.features else []
            total = await count_rows(conn, request)
        except asyncpg.UndefinedTableError as error:
            raise HistoryUnavailableError(
                f"{error}: this database keeps no revision history yet (migrations 0008, 0009)"
            ) from None
        schema = DatasetSchema.of(request, feature_names)
        yield DatasetReader(request, schema, total, chunk_rows, conns)
