"""Read a dataset as Arrow record batches: `COPY (SELECT ...) TO STDOUT` per chunk.

A chunk is the next `chunk_rows` bars of one series (keyset paging on open time), so memory
stays bounded whatever the range, and empty stretches of a range cost nothing. Every chunk is read in
one read-only REPEATABLE READ transaction, so the whole dataset is one consistent snapshot.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

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
    _conn: Connection

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of every batch."""
        return self.schema.arrow()

    async def batches(self) -> AsyncIterator[pa.RecordBatch]:
        """Every row, series after series in request order, each in open-time order."""
        arrow_schema = self.arrow_schema
        for instrument, timeframe in self.request.series():
            keys = (pa.array([str(instrument)]), pa.array([timeframe.label]))
            start = self.request.start
            while True:
                columns = await self._chunk(instrument, timeframe, start)
                rows = len(columns[0])
                if rows == 0:
                    break
                zeros = np.zeros(rows, dtype=np.int32)
                table = pa.Table.from_arrays(
                    [keys[0].take(zeros), keys[1].take(zeros), *columns], schema=arrow_schema
                )
                for batch in table.to_batches():
                    yield batch
                if rows < self.chunk_rows:
                    break
                # Open times are unique per series and stored to the microsecond.
                start = columns[0][-1].as_py() + _MICROSECOND

    async def _copy(
        self,
        query: str,
        format: Literal["csv", "binary", "text"],
        instrument: InstrumentId,
        timeframe: TimeframeSpec,
        start: datetime,
    ) -> bytes:
        parts: list[bytes] = []

        async def collect(data: bytes) -> None:
            parts.append(data)

        await self._conn.copy_from_query(
            query,
            *_series_args(instrument, timeframe, start, self.request.end),
            output=collect,
            format=format,
        )
        return b"".join(parts)

    async def _chunk(
        self, instrument: InstrumentId, timeframe: TimeframeSpec, start: datetime
    ) -> list[pa.Array[Any] | pa.ChunkedArray[Any]]:
        text = await self._copy(self._bars_query, "csv", instrument, timeframe, start)
        if not text:
            return [pa.array([], type=f.type) for f in self.schema.query_fields()]
        try:
            bars = pa_csv.read_csv(
                io.BytesIO(text), read_options=self._read, convert_options=self._convert
            )
        except pa.ArrowInvalid as error:
            # decimal128(38, 18) refuses a value with more decimals rather than rounding it.
            raise DatasetRangeError(f"{instrument} {timeframe.label}: {error}") from None
        columns: list[pa.Array[Any] | pa.ChunkedArray[Any]] = list(bars.columns)
        analytics: list[pa.Array[Any]] = []
        if self._analytics_query is not None:
            data = await self._copy(self._analytics_query, "binary", instrument, timeframe, start)
            try:
                analytics = binary.to_arrow(data, self.schema.analytics_fields())
            except binary.BinaryLayoutError as error:
                raise DatasetRangeError(f"{instrument} {timeframe.label}: {error}") from None
        columns += analytics
        if self._features_query is not None:
            lines = await self._copy(self._features_query, "text", instrument, timeframe, start)
            features = pa_json.read_json(io.BytesIO(lines), parse_options=self._json)
            columns += [features.column(name) for name in self.schema.features or ()]
        if any(len(column) != bars.num_rows for column in columns):
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
        # Bar times are written with their offset; "+00" is what pyarrow reads as UTC.
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        try:
            if feature_names is None:
                feature_names = await _feature_names(conn, request) if request.features else []
            total = await count_rows(conn, request)
        except asyncpg.UndefinedTableError as error:
            raise HistoryUnavailableError(
                f"{error}: this database keeps no revision history yet (migrations 0008, 0009)"
            ) from None
        schema = DatasetSchema.of(request, feature_names)
        yield DatasetReader(request, schema, total, chunk_rows, conn)
