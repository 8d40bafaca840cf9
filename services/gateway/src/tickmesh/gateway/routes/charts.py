"""`/api/v1/charts`, `/features`, `/quality`: bars and analytics of an instrument over gRPC."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from tickmesh.core.errors import DomainError, InvalidArgument
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import from_label
from tickmesh.gateway.bar_json import bars_json, chart_json, indicators_json
from tickmesh.gateway.chart_cache import ChartKey
from tickmesh.gateway.deps import CurrentUser, ServicesDep, rate_limited
from tickmesh.gateway.market_views import features_out, ns_from_utc, quality_out
from tickmesh.gateway.problems import PROBLEM_RESPONSES
from tickmesh.gateway.schemas import (
    TIMEFRAME_PATTERN,
    ChartOut,
    FeatureSeriesOut,
    Instrument,
    QualityOut,
    UtcTime,
)
from tickmesh.v2 import analytics_service_pb2, bar_service_pb2

router = APIRouter(
    prefix="/api/v1",
    tags=["market data"],
    dependencies=[Depends(rate_limited("api"))],
    responses=PROBLEM_RESPONSES
    | {
        404: PROBLEM_RESPONSES[400] | {"description": "Nothing yet"},
        503: PROBLEM_RESPONSES[400] | {"description": "A backend is unavailable"},
    },
)

InstrumentPath = Annotated[Instrument, Path()]
TimeframeQuery = Annotated[str, Query(pattern=TIMEFRAME_PATTERN, examples=["1m"])]
StartQuery = Annotated[UtcTime | None, Query(description="First open time included (ISO 8601).")]
EndQuery = Annotated[UtcTime | None, Query(description="First open time excluded (ISO 8601).")]
AsOfQuery = Annotated[
    UtcTime | None,
    Query(
        description=(
            "Answer as known at this instant (ISO 8601 or Unix epoch milliseconds): later "
            "revisions, and bars not yet final then, are left out. Unset: now."
        ),
        examples=["2024-08-08T12:00:03Z"],
    ),
]


def _range_ns(start: UtcTime | None, end: UtcTime | None) -> tuple[int, int]:
    if start is not None and end is not None and start >= end:
        raise InvalidArgument("start must be before end")
    return (
        0 if start is None else ns_from_utc(start),
        0 if end is None else ns_from_utc(end),
    )


def _as_of_ns(as_of: UtcTime | None) -> int | None:
    """The request's `as_of_ns` (None leaves the field unset: the present)."""
    return None if as_of is None else ns_from_utc(as_of)


@router.get("/charts/{instrument}", response_model=ChartOut)
async def chart(
    instrument: InstrumentPath,
    user: CurrentUser,
    services: ServicesDep,
    timeframe: TimeframeQuery = "1m",
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    indicators: Annotated[bool, Query(description="Also fetch indicator series.")] = True,
    as_of: AsOfQuery = None,
) -> Response:
    """Final bars (oldest first) plus indicator series; without analytics the bars still come.

    Bar prices and volumes are exact decimal strings; indicators are numbers.
    """
    start_ns, end_ns = _range_ns(start, end)
    as_of_ns = _as_of_ns(as_of)
    proto_timeframe = from_label(timeframe).proto
    parsed = InstrumentId.parse(instrument)
    bar_shard = services.backends.bar_shard(parsed)  # the shard owning the instrument
    request = bar_service_pb2.GetBarsRequest(
        instrument=parsed.to_proto(),
        timeframe=proto_timeframe,  # type: ignore[arg-type]
        start_time_ns=start_ns,
        end_time_ns=end_ns,
        limit=limit,
        as_of_ns=as_of_ns,
    )

    async def fetch() -> bar_service_pb2.GetBarsResponse:
        return await bar_shard.call(bar_shard.stub.GetBars, request)

    if as_of_ns is None:
        # Encoded bars from the cache (dropped on every change of these bars), else fetched.
        bars = await services.chart_cache.get(
            ChartKey(parsed, proto_timeframe, start_ns, end_ns, limit),
            fetch,
            lambda reply: bars_json(reply.bars),
        )
    else:
        # The cache holds the present; a point-in-time answer never changes, nor is it hot.
        bars = bars_json((await fetch()).bars)
    series = None
    warnings: list[str] = []
    if indicators:
        # Not cached: analytics stores a bar's indicators after the bar service publishes it.
        try:
            analytics = services.backends.analytics_shard(parsed)
            rows = await analytics.call(
                analytics.stub.GetIndicators,
                analytics_service_pb2.GetIndicatorsRequest(
                    instrument=parsed.to_proto(),
                    timeframe=proto_timeframe,  # type: ignore[arg-type]
                    start_time_ns=start_ns,
                    end_time_ns=end_ns,
                    limit=limit,
                    as_of_ns=as_of_ns,
                ),
            )
            series = indicators_json(rows.rows)
        except DomainError as error:
            # Candles are the chart; indicators are an overlay the dashboard can do without.
            warnings.append(f"indicators unavailable: {error}")
    # Pre-encoded bytes: FastAPI's generic path would validate and encode every bar again.
    return Response(
        chart_json(instrument, timeframe, bars, series, warnings), media_type="application/json"
    )


@router.get("/features/{instrument}")
async def features(
    instrument: InstrumentPath,
    user: CurrentUser,
    services: ServicesDep,
    timeframe: TimeframeQuery = "1m",
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1,
    as_of: AsOfQuery = None,
) -> FeatureSeriesOut:
    """ML feature rows, oldest first (the latest one by default)."""
    start_ns, end_ns = _range_ns(start, end)
    parsed = InstrumentId.parse(instrument)
    analytics = services.backends.analytics_shard(parsed)
    reply = await analytics.call(
        analytics.stub.GetFeatures,
        analytics_service_pb2.GetFeaturesRequest(
            instrument=parsed.to_proto(),
            timeframe=from_label(timeframe).proto,  # type: ignore[arg-type]
            start_time_ns=start_ns,
            end_time_ns=end_ns,
            limit=limit,
            as_of_ns=_as_of_ns(as_of),
        ),
    )
    return FeatureSeriesOut(
        instrument=instrument, timeframe=timeframe, rows=[features_out(row) for row in reply.rows]
    )


@router.get("/quality/{instrument}")
async def quality(
    instrument: InstrumentPath,
    user: CurrentUser,
    services: ServicesDep,
    timeframe: TimeframeQuery = "1m",
    as_of: AsOfQuery = None,
) -> QualityOut:
    """The latest data-quality assessment (as of `as_of` if given); 404 before the first one."""
    parsed = InstrumentId.parse(instrument)
    analytics = services.backends.analytics_shard(parsed)
    reply = await analytics.call(
        analytics.stub.GetQuality,
        analytics_service_pb2.GetQualityRequest(
            instrument=parsed.to_proto(),
            timeframe=from_label(timeframe).proto,  # type: ignore[arg-type]
            as_of_ns=_as_of_ns(as_of),
        ),
    )
    return quality_out(reply.quality, instrument, timeframe)
