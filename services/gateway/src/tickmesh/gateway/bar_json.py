"""Bars and indicator rows encoded straight to JSON bytes, shaped exactly as the API schemas.

The hot paths (a 500-bar chart, a push to thousands of WebSocket clients) skip building one
pydantic model per bar: msgspec encodes a flat struct in one C pass. The shapes match
`BarOut`, `IndicatorsOut` and `ChartOut` field for field (a test compares them), so the
OpenAPI schema still documents what is sent. Prices and volumes are the bar service's exact
decimal strings, copied as they are: nothing here goes through a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from tickmesh.core.exchanges import exchange_label
from tickmesh.core.instruments import SEPARATOR
from tickmesh.core.timeframes import NS_PER_SECOND, from_proto
from tickmesh.core.tracing import TRACEPARENT
from tickmesh.gateway.market_views import utc_from_ns
from tickmesh.gateway.schemas import IndicatorsOut
from tickmesh.v2 import analytics_pb2, market_pb2

_INDICATOR_FIELDS = tuple(name for name in IndicatorsOut.model_fields if name != "time")
_encoder = msgspec.json.Encoder()


class _Bar(msgspec.Struct):
    """`BarOut` as msgspec sees it (same fields, same order)."""

    time: int
    open_time: datetime
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    taker_buy_volume: str | None
    taker_buy_quote_volume: str | None
    trade_count: int
    vwap: float
    final: bool
    revision: int


class _PushedBar(_Bar):
    """A bar in a WebSocket message: `BarOut` plus its instrument and timeframe label."""

    instrument: str
    timeframe: str
    # The gateway span that pushed it, when tracing: lets a browser's devtools find the trace.
    traceparent: str | msgspec.UnsetType = msgspec.UNSET


_BarFields = tuple[
    int, datetime, str, str, str, str, str, str, str | None, str | None, int, float, bool, int
]


def _fields(bar: market_pb2.Bar) -> _BarFields:
    return (
        bar.open_time_ns // NS_PER_SECOND,
        utc_from_ns(bar.open_time_ns),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.quote_volume,
        # Unset (a source bar, a row stored before v2) is unknown, not zero.
        bar.taker_buy_volume if bar.HasField("taker_buy_volume") else None,
        bar.taker_buy_quote_volume if bar.HasField("taker_buy_quote_volume") else None,
        bar.trade_count,
        bar.vwap,
        bar.final,
        bar.revision,
    )


def bars_json(bars: Iterable[market_pb2.Bar]) -> bytes:
    """A JSON array of bars in the `BarOut` shape."""
    return _encoder.encode([_Bar(*_fields(bar)) for bar in bars])


def instrument_text(bar: market_pb2.Bar) -> str:
    """The text form "<venue>:<symbol>" of the bar's instrument."""
    return f"{exchange_label(bar.exchange)}{SEPARATOR}{bar.symbol}"


def pushed_bar_json(bar: market_pb2.Bar) -> bytes:
    """One bar as a WebSocket message carries it (with instrument and timeframe)."""
    return _encoder.encode(
        _PushedBar(
            *_fields(bar),
            instrument=instrument_text(bar),
            timeframe=from_proto(bar.timeframe).label,
            traceparent=bar.trace_context.get(TRACEPARENT) or msgspec.UNSET,
        )
    )


def indicators_json(rows: Sequence[analytics_pb2.Indicators]) -> bytes:
    """A JSON array of indicator rows in the `IndicatorsOut` shape (unset values are null)."""
    return _encoder.encode(
        [
            {"time": row.open_time_ns // NS_PER_SECOND}
            | {
                name: getattr(row, name) if row.HasField(name) else None  # type: ignore[arg-type]
                for name in _INDICATOR_FIELDS
            }
            for row in rows
        ]
    )


def chart_json(
    instrument: str, timeframe: str, bars: bytes, indicators: bytes | None, warnings: list[str]
) -> bytes:
    """A `ChartOut` document around already encoded bars and indicator series."""
    return _encoder.encode(
        {
            "instrument": instrument,
            "timeframe": timeframe,
            "bars": msgspec.Raw(bars),
            "indicators": None if indicators is None else msgspec.Raw(indicators),
            "warnings": warnings,
        }
    )


def bars_message_text(instrument: str, label: str, fragments: Iterable[str]) -> str:
    """A WebSocket `bars` message around bars already encoded by `pushed_bar_json`."""
    return (
        '{"type":"bars","instrument":'
        + _encoder.encode(instrument).decode()
        + ',"timeframe":'
        + _encoder.encode(label).decode()
        + ',"bars":['
        + ",".join(fragments)
        + "]}"
    )


class PushEncoder:
    """WebSocket `bars` messages, each upstream bar encoded once for every client of a replica.

    The fan-out hands the same Bar object to every connection, so fragments are memoised by
    object identity (the entry keeps the bar alive, so an id cannot be reused while cached),
    and a whole message by its timeframe and bars: clients in step share one string.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max_entries = max_entries
        self._fragments: dict[int, tuple[market_pb2.Bar, str]] = {}
        self._messages: dict[tuple[str, str, tuple[int, ...]], str] = {}

    def bars_message(self, instrument: str, label: str, bars: Sequence[market_pb2.Bar]) -> str:
        """The text of a `bars` message of `instrument` (its text form) and timeframe `label`."""
        key = (instrument, label, tuple(id(bar) for bar in bars))
        message = self._messages.get(key)
        if message is not None and all(self._fragments.get(id(b), (None,))[0] is b for b in bars):
            return message
        if len(self._fragments) >= self._max_entries:
            self._fragments.clear()
            self._messages.clear()
        message = bars_message_text(instrument, label, (self._fragment(bar) for bar in bars))
        self._messages[key] = message
        return message

    def _fragment(self, bar: market_pb2.Bar) -> str:
        cached = self._fragments.get(id(bar))
        if cached is not None and cached[0] is bar:
            return cached[1]
        fragment = pushed_bar_json(bar).decode()
        self._fragments[id(bar)] = (bar, fragment)
        return fragment
