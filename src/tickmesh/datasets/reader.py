"""Read a dataset as Arrow record batches: one `COPY (SELECT ...) TO STDOUT` per chunk.

A chunk is one series' bars in a time window of `chunk_rows` bar lengths, so no chunk holds
more than `chunk_rows` rows whatever the range: memory stays bounded. Every chunk is read in
one read-only REPEATABLE READ transaction, so the whole dataset is one consistent snapshot.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from tickmesh.core.db.pool import Connection
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import TimeframeSpec
from tickmesh.datasets import sql
from tickmesh.datasets.request import DatasetRequest
from tickmesh.datasets.schema import DatasetSchema

DEFAULT_CHUNK_ROWS = 50_000
# pyarrow parses a chunk's CSV in blocks of this size, on its own threads.
_BLOCK_BYTES = 8 << 20


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
    _conn: Connection

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of every batch."""
        return self.schema.arrow()

    def _windows(self, timeframe: TimeframeSpec) -> list[tuple[datetime, datetime]]:
        step = timedelta(microseconds=timeframe.duration_ns // 1000 * self.chunk_rows)
        windows = []
        start = self.request.start
        while start < self.request.end:
            # A window past year 9999 cannot be built; the range ends first anyway.
            end = self.request.end if self.request.end - start <= step else start + step
            windows.append((start, end))
            start = end
        return windows

    async def batches(self) -> AsyncIterator[pa.RecordBatch]:
        """Every row, series after series in request order, each in open-time order."""
        query = sql.chunk_query(self.schema)
        fields = self.schema.query_fields()
        read = pa_csv.ReadOptions(column_names=[f.name for f in fields], block_size=_BLOCK_BYTES)
        convert = pa_csv.ConvertOptions(
            column_types={f.name: f.type for f in fields}, strings_can_be_null=True
        )
        arrow_schema = self.arrow_schema
        for instrument, timeframe in self.request.series():
            keys = (pa.array([str(instrument)]), pa.array([timeframe.label]))
            for start, end in self._windows(timeframe):
                parts: list[bytes] = []

                async def collect(data: bytes, parts: list[bytes] = parts) -> None:
                    parts.append(data)

                await self._conn.copy_from_query(
                    query,
                    *_series_args(instrument, timeframe, start, end),
                    output=collect,
                    format="csv",
                )
                if not parts:
                    continue
                try:
                    table = pa_csv.read_csv(
                        io.BytesIO(b"".join(parts)), read_options=read, convert_options=convert
                    )
                except pa.ArrowInvalid as error:
                    raise DatasetRangeError(f"{instrument} {timeframe.label}: {error}") from None
                zeros = np.zeros(table.num_rows, dtype=np.int32)
                columns: list[pa.Array[Any] | pa.ChunkedArray[Any]] = [
                    keys[0].take(zeros),
                    keys[1].take(zeros),
                    *table.columns,
                ]
                table = pa.Table.from_arrays(columns, schema=arrow_schema)
                for batch in table.to_batches():
                    yield batch


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


@contextlib.asynccontextmanager
async def open_dataset(
    pool: asyncpg.Pool,
    request: DatasetRequest,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    feature_names: list[str] | None = None,
) -> AsyncIterator[DatasetReader]:
    """Open `request` on one connection of `pool` in one snapshot; the reader inside.

    Feature columns are `feature_names`, or by default the names stored for the range.
    """
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # Times are written with their offset; "+00" is what pyarrow reads as UTC.
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        if feature_names is None:
            feature_names = await _feature_names(conn, request) if request.features else []
        schema = DatasetSchema.of(request, feature_names)
        total = await count_rows(conn, request)
        yield DatasetReader(request, schema, total, chunk_rows, conn)
