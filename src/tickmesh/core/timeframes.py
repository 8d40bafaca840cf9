"""Timeframes: the proto enum, its labels ("1m" .. "1d") and bucket arithmetic in UTC nanoseconds."""

from __future__ import annotations

from dataclasses import dataclass

from tickmesh.v2 import market_pb2

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND


@dataclass(frozen=True, slots=True)
class TimeframeSpec:
    """One bar length: its proto enum value, its label and its length in nanoseconds."""

    proto: int
    label: str
    duration_ns: int

    def bucket(self, time_ns: int) -> int:
        """Return the open time of the bucket holding `time_ns` (floor in UTC; days start 00:00)."""
        return time_ns - time_ns % self.duration_ns


TIMEFRAMES: tuple[TimeframeSpec, ...] = (
    TimeframeSpec(market_pb2.TIMEFRAME_1M, "1m", NS_PER_MINUTE),
    TimeframeSpec(market_pb2.TIMEFRAME_5M, "5m", 5 * NS_PER_MINUTE),
    TimeframeSpec(market_pb2.TIMEFRAME_15M, "15m", 15 * NS_PER_MINUTE),
    TimeframeSpec(market_pb2.TIMEFRAME_1H, "1h", 60 * NS_PER_MINUTE),
    TimeframeSpec(market_pb2.TIMEFRAME_4H, "4h", 240 * NS_PER_MINUTE),
    TimeframeSpec(market_pb2.TIMEFRAME_1D, "1d", 1440 * NS_PER_MINUTE),
)

BY_PROTO: dict[int, TimeframeSpec] = {tf.proto: tf for tf in TIMEFRAMES}
BY_LABEL: dict[str, TimeframeSpec] = {tf.label: tf for tf in TIMEFRAMES}


def from_proto(value: int) -> TimeframeSpec:
    """Return the timeframe of a proto enum value; ValueError for UNSPECIFIED or unknown values."""
    try:
        return BY_PROTO[value]
    except KeyError:
        raise ValueError(f"unknown timeframe enum value {value}") from None


def from_label(label: str) -> TimeframeSpec:
    """Return the timeframe of a label such as "5m"; ValueError naming the accepted labels."""
    try:
        return BY_LABEL[label]
    except KeyError:
        accepted = ", ".join(BY_LABEL)
        raise ValueError(f"unknown timeframe {label!r}; expected one of {accepted}") from None
