"""`/api/v1/charts`, `/features`, `/quality`: bars and analytics of a symbol over gRPC."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from tickmesh.core.errors import DomainError, InvalidArgument
from tickmesh.core.timeframes import from_label
from tickmesh.gateway.bar_json import bars_json, chart_json, indicators_json
from tickmesh.gateway.chart_cache import ChartKey
from tickmesh.gateway.deps import CurrentUser, ServicesDep, rate_limited
from tickmesh.gateway.market_views import features_out, ns_from_utc, quality_out
from tickmesh.gateway.problems import PROBLEM_RESPONSES
from tickmesh.gateway.schemas import (
    SYMBOL_PATTERN,
    TIMEFRAME_PATTERN,
    ChartOut,
    FeatureSeriesOut,
    QualityOut,
    UtcTime,
)
from tickmesh.v1 import analytics_service_pb2, bar_service_pb2

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

SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])]
TimeframeQuery = Annotated[str, Query(pattern=TIMEFRAME_PATTERN, examples=["1m"])]
StartQuery = Annotated[UtcTime | None, Query(description="First open time included (ISO 8601).")]
EndQuery = Annotated[UtcTime | None, Query(description="First open time excluded (ISO 8601).")]


def _range_ns(start: UtcTime | None, end: UtcTime | None) -> tuple[int, int]:
    if start is not None and end is not None and start >= end:
        raise InvalidArgument("start must be before end")
    return (
        0 if start is None else ns_from_utc(start),
        0 if end is None else ns_from_utc(end),
    )


@router.get("/charts/{symbol}", response_model=ChartOut)
async def chart(
    symbol: SymbolPath,
    user: CurrentUser,
    services: ServicesDep,
    timeframe: TimeframeQuery = "1m",
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    indicators: Annotated[bool, Query(description="Also fetch indicator series.")] = True,
) -> Response:
    """Final bars (oldest first) plus indicator series; without analytics the bars still come."""
    start_ns, end_ns = _range_ns(start, end)
    proto_timeframe = from_label(timeframe).proto
    bar_shard = services.backends.bar_shard(symbol)  # the shard owning the symbol
    request = bar_service_pb2.GetBarsRequest(
        symbol=symbol,
        timeframe=proto_timeframe,  # type: ignore[arg-type]
        start_time_ns=start_ns,
        end_time_ns=end_ns,
        limit=limit,
    )

    async def fetch() -> bar_service_pb2.GetBarsResponse:
        return await bar_shard.call(bar_shard.stub.GetBars, request)

    # Encoded bars from the cache (dropped on every change of this symbol's bars), else fetched.
    bars = await services.chart_cache.get(
        ChartKey(symbol, proto_timeframe, start_ns, end_ns, limit),
        fetch,
        lambda reply: bars_json(reply.bars),
    )
    series = None
    warnings: list[str] = []
    if indicators:
        # Not cached: analytics stores a bar's indicators after the bar service publishes it.
        try:
            backends = services.backends
            rows = await backends.analytics.call(
                backends.analytics_service.GetIndicators,
                analytics_service_pb2.GetIndicatorsRequest(
                    symbol=symbol,
                    timeframe=proto_timeframe,  # type: ignore[arg-type]
                    start_time_ns=start_ns,
                    end_time_ns=end_ns,
                    limit=limit,
                ),
            )
            series = indicators_json(rows.rows)
        except DomainError as error:
            # Candles are the chart; indicators are an overlay the dashboard can do without.
            warnings.append(f"indicators unavailable: {error}")
    # Pre-encoded bytes: FastAPI's generic path would validate and encode every bar again.
    return Response(
        chart_json(symbol, timeframe, bars, series, warnings), media_type="application/json"
    )


@router.get("/features/{symbol}")
async def features(
    symbol: SymbolPath,
    user: CurrentUser,
    services: ServicesDep,
    timeframe: TimeframeQuery = "1m",
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1,
) -> FeatureSeriesOut:
    """ML feature rows, oldest first (the latest one by default)."""
    start_ns, end_ns = _range_ns(start, end)
    reply = await services.backends.analytics.call(
        services.backends.analytics_service.GetFeatures,
        analytics_service_pb2.GetFeaturesRequest(
            symbol=symbol,
            timeframe=from_label(timeframe).proto,  # type: ignore[arg-type]
            start_time_ns=start_ns,
            end_time_ns=end_ns,
            limit=limit,
        ),
    )
    return FeatureSeriesOut(
        symbol=symbol, timeframe=timeframe, rows=[features_out(row) for row in reply.rows]
    )


@router.get("/quality/{symbol}")
async def quality(
    symbol: SymbolPath,
    user: CurrentUser,
    services: ServicesDep,
    timeframe: TimeframeQuery = "1m",
) -> QualityOut:
    """The latest data-quality assessment; 404 before the first one."""
    reply = await services.backends.analytics.call(
        services.backends.analytics_service.GetQuality,
        analytics_service_pb2.GetQualityRequest(
            symbol=symbol,
            timeframe=from_label(timeframe).proto,  # type: ignore[arg-type]
        ),
    )
    return quality_out(reply.quality, timeframe)
