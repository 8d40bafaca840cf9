"""`/api/v1/datasets`: bars, indicators and features of a range as an Arrow IPC stream or CSV.

The same rows as `tickmesh export` (tickmesh.datasets), read from PostgreSQL in bounded
chunks and streamed as they are read, for notebooks (`pyarrow.ipc.open_stream`, pandas).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from tickmesh.core.errors import InvalidArgument, Unavailable
from tickmesh.datasets import DatasetRequestError, open_dataset, parse_request
from tickmesh.datasets.formats import ARROW_STREAM, CSV, MEDIA_TYPES, Format, encoded
from tickmesh.datasets.reader import HistoryUnavailableError
from tickmesh.datasets.request import MAX_INSTRUMENTS
from tickmesh.gateway.deps import CurrentUser, ServicesDep, rate_limited
from tickmesh.gateway.problems import PROBLEM_RESPONSES
from tickmesh.gateway.schemas import Instrument, TimeframeLabel, UtcTime

_BINARY = {"schema": {"type": "string", "format": "binary"}}

router = APIRouter(
    prefix="/api/v1",
    tags=["datasets"],
    dependencies=[Depends(rate_limited("api"))],
    responses=PROBLEM_RESPONSES
    | {503: PROBLEM_RESPONSES[400] | {"description": "as_of without the history tables"}},
)


class DatasetUnprocessable(InvalidArgument):
    """A dataset request that is well formed but cannot be answered (a bad range, too many rows)."""

    http_status = 422


def _format(requested: Format | None, accept: str | None) -> Format:
    # An explicit ?format= wins; otherwise Accept picks CSV, and Arrow is the default.
    if requested is not None:
        return requested
    return "csv" if accept is not None and CSV in accept else "arrow"


@router.get(
    "/datasets",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The rows, bar by bar: series after series in request order, each "
            "oldest first (columns: README, Datasets)",
            "content": {ARROW_STREAM: _BINARY, CSV: _BINARY},
            "headers": {
                "X-Dataset-Rows": {
                    "description": "The number of rows the body holds.",
                    "schema": {"type": "integer"},
                }
            },
        }
    },
)
async def dataset(
    user: CurrentUser,
    services: ServicesDep,
    instrument: Annotated[
        list[Instrument],
        Query(min_length=1, max_length=MAX_INSTRUMENTS, description="Repeat for several."),
    ],
    timeframe: Annotated[
        list[TimeframeLabel], Query(min_length=1, max_length=6, description="Repeat for several.")
    ],
    start: Annotated[UtcTime, Query(description="First bar open time included (ISO 8601).")],
    end: Annotated[UtcTime, Query(description="First bar open time excluded (ISO 8601).")],
    as_of: Annotated[
        bool,
        Query(
            description="Each row as known when its bar first became final (revision 0, the "
            "first indicators and features): no look-ahead. Default: the latest values."
        ),
    ] = False,
    indicators: Annotated[bool, Query(description="Include the ind_* columns.")] = True,
    features: Annotated[bool, Query(description="Include the feat_* columns.")] = True,
    format: Annotated[
        Literal["arrow", "csv"] | None,
        Query(description="arrow (IPC stream) or csv; default: from Accept, else arrow."),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """Bars with their indicators and features, joined per bar, streamed as Arrow or CSV.

    Prices and volumes are exact decimals (Arrow decimal128(38, 18)); a range of more rows
    than the gateway's limit is a 422 naming the limit.
    """
    try:
        request = parse_request(
            instrument, timeframe, start, end, as_of=as_of, indicators=indicators, features=features
        )
    except DatasetRequestError as error:
        raise DatasetUnprocessable(str(error)) from None
    chosen = _format(format, accept)
    limit = services.settings.gateway_dataset_max_rows
    # The snapshot stays open while the body streams; the stack closes it at the end or when
    # the client goes away.
    stack = contextlib.AsyncExitStack()
    try:
        reader = await stack.enter_async_context(open_dataset(services.pool, request))
    except HistoryUnavailableError as error:
        raise Unavailable(str(error)) from None
    if reader.total_rows > limit:
        await stack.aclose()
        raise DatasetUnprocessable(
            f"the dataset has {reader.total_rows} rows, over the limit of {limit} rows per "
            "answer (TICKMESH_GATEWAY_DATASET_MAX_ROWS): narrow the range or the instruments, "
            "or use `tickmesh export`"
        )

    async def body() -> AsyncIterator[bytes]:
        try:
            async for piece in encoded(reader, chosen):
                yield piece
        finally:
            await stack.aclose()

    return StreamingResponse(
        body(),
        media_type=MEDIA_TYPES[chosen],
        headers={"X-Dataset-Rows": str(reader.total_rows)},
        background=BackgroundTask(stack.aclose),
    )
