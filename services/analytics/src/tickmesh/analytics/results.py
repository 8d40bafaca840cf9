"""Analytics outputs as frozen dataclasses mirroring tickmesh.v2 Indicators, Features, Quality, Anomaly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import analytics_pb2, market_pb2


@dataclass(frozen=True, slots=True)
class Indicators:
    """The technical indicators of one final bar; None while there is too little history."""

    instrument: InstrumentId
    timeframe: int
    open_time_ns: int
    rsi: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_histogram: float | None = None
    bb_upper: float | None = None
    bb_middle: float | None = None
    bb_lower: float | None = None
    sma_20: float | None = None
    sma_50: float | None = None
    sma_100: float | None = None
    sma_200: float | None = None
    ema_12: float | None = None
    ema_26: float | None = None
    ema_50: float | None = None
    vwap: float | None = None
    stoch_k: float | None = None
    stoch_d: float | None = None
    atr: float | None = None
    adx: float | None = None
    volume_sma: float | None = None

    def values(self) -> dict[str, float]:
        """Return the indicators that have a value, by proto field name."""
        out: dict[str, float] = {}
        for name in INDICATOR_NAMES:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_proto(self) -> analytics_pb2.Indicators:
        """Return the tickmesh.v2.Indicators message; None fields stay unset."""
        message = analytics_pb2.Indicators(
            symbol=self.instrument.symbol,
            exchange=market_pb2.Exchange.ValueType(self.instrument.exchange),
            timeframe=market_pb2.Timeframe.ValueType(self.timeframe),
            open_time_ns=self.open_time_ns,
        )
        for name, value in self.values().items():
            setattr(message, name, value)
        return message


@dataclass(frozen=True, slots=True)
class Features:
    """The ML features of one final bar; a feature without enough history is absent."""

    instrument: InstrumentId
    timeframe: int
    open_time_ns: int
    feature_version: str
    values: Mapping[str, float]

    def to_proto(self) -> analytics_pb2.Features:
        """Return the tickmesh.v2.Features message."""
        return analytics_pb2.Features(
            symbol=self.instrument.symbol,
            exchange=market_pb2.Exchange.ValueType(self.instrument.exchange),
            timeframe=market_pb2.Timeframe.ValueType(self.timeframe),
            open_time_ns=self.open_time_ns,
            feature_version=self.feature_version,
            values=dict(self.values),
        )


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One finding of a data-quality check."""

    check: str
    time_ns: int
    detail: str

    def to_proto(self) -> analytics_pb2.Anomaly:
        """Return the tickmesh.v2.Anomaly message."""
        return analytics_pb2.Anomaly(check=self.check, time_ns=self.time_ns, detail=self.detail)


@dataclass(frozen=True, slots=True)
class Quality:
    """The data-quality assessment of one instrument and timeframe at one moment.

    `time_ns` is the stream's clock (the newest bar's close); `received_ns` the wall-clock time
    that bar was received, kept with the row so GetQuality can judge staleness later.
    """

    instrument: InstrumentId
    timeframe: int
    time_ns: int
    score: float
    checks_passed: tuple[str, ...] = ()
    checks_failed: tuple[str, ...] = ()
    anomalies: tuple[Anomaly, ...] = field(default_factory=tuple)
    received_ns: int | None = None

    def to_proto(self) -> analytics_pb2.Quality:
        """Return the tickmesh.v2.Quality message."""
        return analytics_pb2.Quality(
            symbol=self.instrument.symbol,
            exchange=market_pb2.Exchange.ValueType(self.instrument.exchange),
            timeframe=market_pb2.Timeframe.ValueType(self.timeframe),
            time_ns=self.time_ns,
            score=self.score,
            checks_passed=list(self.checks_passed),
            checks_failed=list(self.checks_failed),
            anomalies=[anomaly.to_proto() for anomaly in self.anomalies],
        )
