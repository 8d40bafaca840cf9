"""A dataset's batches as the bytes of an Arrow IPC stream or of CSV, chunk by chunk."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pa_csv

from tickmesh.datasets.reader import DatasetReader

ARROW_STREAM = "application/vnd.apache.arrow.stream"
CSV = "text/csv"
Format = Literal["arrow", "csv"]
MEDIA_TYPES: dict[Format, str] = {"arrow": ARROW_STREAM, "csv": CSV}


def _drain(buffer: io.BytesIO) -> bytes:
    data = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return data


async def encoded(reader: DatasetReader, format: Format) -> AsyncIterator[bytes]:
    """The dataset as `format`: the schema (or CSV header) first, then one piece per batch.

    An Arrow stream of no rows still carries the schema; CSV decimals keep all 18 places.
    """
    buffer = io.BytesIO()
    writer: pa.ipc.RecordBatchStreamWriter | pa_csv.CSVWriter
    if format == "arrow":
        writer = pa.ipc.new_stream(buffer, reader.arrow_schema)
    else:
        writer = pa_csv.CSVWriter(buffer, reader.arrow_schema)
    with writer:
        yield _drain(buffer)
        async for batch in reader.batches():
            writer.write_batch(batch)
            yield _drain(buffer)
    # Closing writes the Arrow end-of-stream marker.
    tail = _drain(buffer)
    if tail:
        yield tail
