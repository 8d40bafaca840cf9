"""Protobuf market messages turned into the API's JSON shapes (REST and WebSocket alike)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tickmesh.core.timeframes import NS_PER_SECOND, from_proto
from tickmesh.gateway.schemas import (
    AnomalyOut,
    BarOut,
    FeaturesOut,
    IndicatorsOut,
    QualityOut,
)
from tickmesh.v2 import analytics_pb2, market_pb2

_INDICATOR_FIELDS = tuple(name for name in IndicatorsOut.model_fields if name != "time")


def utc_from_ns(time_ns: int) -> datetime:
    """A Unix-epoch nanosecond time as an aware UTC datetime (microsecond precision)."""
    return datetime.fromtimestamp(time_ns // 1000 / 1_000_000, UTC)


def ns_from_utc(value: datetime) -> int:
    """An aware datetime as Unix-epoch nanoseconds."""
    return int(value.timestamp() * 1_000_000) * 1000


def bar_out(bar: market_pb2.Bar) -> BarOut:
    """The API form of a bar."""
    return BarOut(
        time=bar.open_time_ns // NS_PER_SECOND,
        open_time=utc_from_ns(bar.open_time_ns),
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        quote_volume=bar.quote_volume,
        taker_buy_volume=bar.taker_buy_volume if bar.HasField("taker_buy_volume") else None,
        taker_buy_quote_volume=(
            bar.taker_buy_quote_volume if bar.HasField("taker_buy_quote_volume") else None
        ),
        trade_count=bar.trade_count,
        vwap=bar.vwap,
        final=bar.final,
        revision=bar.revision,
    )


def indicators_out(row: analytics_pb2.Indicators) -> IndicatorsOut:
    """The API form of an indicator row; unset fields become null."""
    values = {
        name: getattr(row, name)
        for name in _INDICATOR_FIELDS
        if row.HasField(name)  # type: ignore[arg-type]
    }
    return IndicatorsOut(time=row.open_time_ns // NS_PER_SECOND, **values)


def indicators_message(instrument: str, row: analytics_pb2.Indicators) -> dict[str, Any]:
    """The WebSocket `indicators` message of a row of `instrument` (its text form)."""
    return {
        "type": "indicators",
        "instrument": instrument,
        "timeframe": from_proto(row.timeframe).label,
        "indicators": indicators_out(row).model_dump(mode="json"),
    }


def features_out(row: analytics_pb2.Features) -> FeaturesOut:
    """The API form of a feature row."""
    return FeaturesOut(
        time=row.open_time_ns // NS_PER_SECOND,
        feature_version=row.feature_version,
        values=dict(row.values),
    )


def quality_out(quality: analytics_pb2.Quality, instrument: str, timeframe: str) -> QualityOut:
    """The API form of a quality assessment of `instrument` (its text form)."""
    return QualityOut(
        instrument=instrument,
        timeframe=timeframe,
        time=utc_from_ns(quality.time_ns),
        score=quality.score,
        checks_passed=list(quality.checks_passed),
        checks_failed=list(quality.checks_failed),
        anomalies=[
            AnomalyOut(check=a.check, time=utc_from_ns(a.time_ns), detail=a.detail)
            for a in quality.anomalies
        ],
    )
