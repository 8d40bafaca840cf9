"""Analytics results between their shapes: domain dataclasses and rows of the tables analytics owns."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

import msgspec

from tickmesh.analytics.feature_layouts import pack_values
from tickmesh.analytics.results import Anomaly, Features, Indicators, Quality
from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import from_label, from_proto

INDICATOR_COLUMNS: tuple[str, ...] = ("time", "exchange", "symbol", "timeframe", *INDICATOR_NAMES)
FEATURE_COLUMNS: tuple[str, ...] = (
    "time",
    "exchange",
    "symbol",
    "timeframe",
    "feature_version",
    "features",
    "feature_layout",
    "feature_values",
)
# What a feature read needs: the values packed beside the JSON are for exports (0012).
FEATURE_READ_COLUMNS: tuple[str, ...] = FEATURE_COLUMNS[:-2]
QUALITY_COLUMNS: tuple[str, ...] = (
    "time",
    "exchange",
    "symbol",
    "timeframe",
    "quality_score",
    "checks_passed",
    "checks_failed",
    "passed_checks",
    "failed_checks",
    "anomalies",
    "received_at",
)


class Record(Protocol):
    """A row read by asyncpg (or any mapping of column names to values)."""

    def __getitem__(self, key: str, /) -> Any: ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One compact encoder: json.dumps with options builds a new one per call. NaN/inf raise, since
# PostgreSQL's JSON has no such values.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# Feature rows, every bar of a minute burst (2,000 rows of 91 values): msgspec writes the same
# numbers 15x faster than json (its text may spell an exponent differently: 1e-05 is 0.00001).
# It writes NaN as null, so finiteness is checked first.
_FEATURES_JSON = msgspec.json.Encoder()


def ns_to_datetime(time_ns: int) -> datetime:
    """A UTC datetime of a nanosecond timestamp (microsecond precision, as PostgreSQL keeps)."""
    return datetime.fromtimestamp(time_ns // 1000 / 1_000_000, UTC)


def datetime_to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of a timezone-aware datetime, exactly."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def timeframe_label(timeframe: int) -> str:
    """The stored label ("1m") of a proto timeframe value."""
    return from_proto(timeframe).label


def _finite_or_none(value: float | None) -> float | None:
    # The table says "no value yet" with NULL; a NaN or inf must never reach it.
    if value is None or not math.isfinite(value):
        return None
    return value


def indicator_row(indicators: Indicators) -> tuple[object, ...]:
    """The `indicators` row of one bar, in INDICATOR_COLUMNS order; NULL where there is no value."""
    return (
        ns_to_datetime(indicators.open_time_ns),
        indicators.instrument.venue,
        indicators.instrument.symbol,
        timeframe_label(indicators.timeframe),
        *(_finite_or_none(getattr(indicators, name)) for name in INDICATOR_NAMES),
    )


def feature_row(features: Features, layout: int) -> tuple[object, ...]:
    """The `ml_features` row of one bar, in FEATURE_COLUMNS order: the features as JSON text,
    and packed in the order of their names, whose id in `feature_layouts` is `layout`."""
    values = features.values
    if not all(map(math.isfinite, values.values())):  # computed features are finite already
        values = {name: value for name, value in values.items() if math.isfinite(value)}
    text = _FEATURES_JSON.encode(values).decode()
    return (
        ns_to_datetime(features.open_time_ns),
        features.instrument.venue,
        features.instrument.symbol,
        timeframe_label(features.timeframe),
        features.feature_version,
        text,
        layout,
        pack_values(features.values),
    )


def quality_row(quality: Quality) -> tuple[object, ...]:
    """The `data_quality_metrics` row of one assessment, in QUALITY_COLUMNS order."""
    anomalies = [
        {"check": anomaly.check, "time_ns": anomaly.time_ns, "detail": anomaly.detail}
        for anomaly in quality.anomalies
    ]
    return (
        ns_to_datetime(quality.time_ns),
        quality.instrument.venue,
        quality.instrument.symbol,
        timeframe_label(quality.timeframe),
        quality.score,
        len(quality.checks_passed),
        len(quality.checks_failed),
        list(quality.checks_passed),
        list(quality.checks_failed),
        _JSON.encode(anomalies),
        None if quality.received_ns is None else ns_to_datetime(quality.received_ns),
    )


def instrument_of_record(record: Record) -> InstrumentId:
    """The instrument of a row (its stored venue label and symbol)."""
    return _instrument(record["exchange"], record["symbol"])


@lru_cache(maxsize=4096)
def _instrument(venue: str, symbol: str) -> InstrumentId:
    # A range query reads thousands of rows of one instrument: validate it once.
    return InstrumentId.of(venue, symbol)


def indicators_from_record(record: Record) -> Indicators:
    """The Indicators of an `indicators` row."""
    values = {name: record[name] for name in INDICATOR_NAMES}
    return Indicators(
        instrument=instrument_of_record(record),
        timeframe=from_label(record["timeframe"]).proto,
        open_time_ns=datetime_to_ns(record["time"]),
        **values,
    )


def features_from_record(record: Record) -> Features:
    """The Features of an `ml_features` row."""
    return Features(
        instrument=instrument_of_record(record),
        timeframe=from_label(record["timeframe"]).proto,
        open_time_ns=datetime_to_ns(record["time"]),
        feature_version=record["feature_version"],
        values=json.loads(record["features"]),
    )


def quality_from_record(record: Record) -> Quality:
    """The Quality of a `data_quality_metrics` row."""
    anomalies = tuple(
        Anomaly(item["check"], int(item["time_ns"]), item["detail"])
        for item in json.loads(record["anomalies"])
    )
    return Quality(
        instrument=instrument_of_record(record),
        timeframe=from_label(record["timeframe"]).proto,
        time_ns=datetime_to_ns(record["time"]),
        score=record["quality_score"],
        checks_passed=tuple(record["passed_checks"]),
        checks_failed=tuple(record["failed_checks"]),
        anomalies=anomalies,
        received_ns=None
        if record["received_at"] is None
        else datetime_to_ns(record["received_at"]),
    )
