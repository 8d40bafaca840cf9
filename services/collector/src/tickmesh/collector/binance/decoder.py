"""Decode raw Binance WebSocket frames into per-symbol trade columns.

One decoder per connection: ``feed`` takes each frame as received (bytes or
str), routes it by stream name (combined streams) or event type (raw streams),
and appends trades into one ``SymbolTradesBuilder`` per symbol. Nothing raises
out of ``feed``: a bad frame is counted by kind and returned as a
``DecodeError`` carrying a sample, so the connection loop can log it and go on.

A trade refused for a price or quantity finer than the instrument's tick or step size
(known from exchangeInfo) is a real trade of the exchange: its id is kept in
``take_refused`` so the gap book counts it as seen and never asks REST for it again.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec

from tickmesh.collector.binance.columns import (
    InvalidTradeError,
    OffIncrementError,
    SymbolTradesBuilder,
)
from tickmesh.collector.binance.schemas import (
    AggTrade,
    CombinedFuturesTrade,
    CombinedSpotTrade,
    FrameHead,
    FuturesTrade,
    SpotTrade,
)
from tickmesh.core.decimals import DecimalValueError
from tickmesh.v2 import market_pb2

_SAMPLE_CHARS: Final = 200

# Streams a trade collector may share a connection with; their frames are counted, not parsed.
IGNORED_STREAM_TYPES: Final = frozenset(
    {
        "bookTicker",
        "depth",
        "depthUpdate",
        "kline",
        "continuousKline",
        "markPrice",
        "markPriceUpdate",
        "ticker",
        "miniTicker",
        "24hrTicker",
        "24hrMiniTicker",
        "avgPrice",
        "forceOrder",
        "compositeIndex",
        "contractInfo",
        "assetIndex",
        "indexPrice",
    }
)


class DecodeErrorKind(enum.StrEnum):
    """Why a frame produced no trade."""

    BAD_JSON = "bad_json"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    # A price or quantity finer than the instrument's tick or step size: refused, id seen.
    OFF_INCREMENT = "off_increment"
    UNKNOWN_STREAM = "unknown_stream"
    EXCHANGE_ERROR = "exchange_error"


@dataclass(frozen=True, slots=True)
class DecodeError:
    """One rejected frame: the kind, a message and the frame's first characters."""

    kind: DecodeErrorKind
    message: str
    sample: str


@dataclass(slots=True)
class DecodeStats:
    """Running counts of one decoder; last_errors keeps the latest sample per kind.

    frames and trades are as of the last read of ``BinanceStreamDecoder.stats``.
    """

    frames: int = 0
    trades: int = 0
    control_replies: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    errors: Counter[DecodeErrorKind] = field(default_factory=Counter)
    last_errors: dict[DecodeErrorKind, DecodeError] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        """Total rejected frames over every kind."""
        return sum(self.errors.values())


class _TradePayload(Protocol):
    @property
    def s(self) -> str: ...

    def parse_to_columns(self, builder: SymbolTradesBuilder, receive_time_ns: int) -> None: ...


_PayloadDecoder = msgspec.json.Decoder[SpotTrade] | msgspec.json.Decoder[FuturesTrade]
_CombinedDecoder = (
    msgspec.json.Decoder[CombinedSpotTrade] | msgspec.json.Decoder[CombinedFuturesTrade]
)
_AnyDecoder = _PayloadDecoder | msgspec.json.Decoder[AggTrade]


def _stream_type(stream: str) -> str:
    """'btcusdt@depth20@100ms' -> 'depth', 'ethusdt@kline_1m' -> 'kline'."""
    _, _, rest = stream.partition("@")
    head = rest.split("@", 1)[0].split("_", 1)[0]
    return head.rstrip("0123456789") or head


def _sample(frame: bytes | str) -> str:
    text = frame if isinstance(frame, str) else frame[:_SAMPLE_CHARS].decode("utf-8", "replace")
    return text[:_SAMPLE_CHARS]


class BinanceStreamDecoder:
    """Decodes one Binance connection's frames into per-symbol columnar trades."""

    def __init__(
        self, exchange: market_pb2.Exchange.ValueType, *, futures: bool | None = None
    ) -> None:
        self.exchange = exchange
        is_futures = exchange == market_pb2.EXCHANGE_BINANCE_USDM if futures is None else futures
        self._head = msgspec.json.Decoder(FrameHead)
        trade: _AnyDecoder
        if is_futures:
            trade = msgspec.json.Decoder(FuturesTrade, strict=False)
        else:
            trade = msgspec.json.Decoder(SpotTrade, strict=False)
        agg: _AnyDecoder = msgspec.json.Decoder(AggTrade, strict=False)
        self._by_event: dict[str, _AnyDecoder] = {"trade": trade, "aggTrade": agg}
        # The hot path: a combined-stream trade frame decoded in one pass. Any other frame
        # (or the first of each stream) takes the general path below, which routes by stream.
        self._combined: _CombinedDecoder = (
            msgspec.json.Decoder(CombinedFuturesTrade, strict=False)
            if is_futures
            else msgspec.json.Decoder(CombinedSpotTrade, strict=False)
        )
        self._trade_type: type = FuturesTrade if is_futures else SpotTrade
        # stream name -> payload class the general path routed it to (trades only).
        self._fast_streams: dict[str, type] = {}
        # stream name -> (payload decoder or None for a known non-trade stream, stream type).
        self._routes: dict[str, tuple[_AnyDecoder | None, str]] = {}
        self._builders: dict[str, SymbolTradesBuilder] = {}
        # Builders appended to since the last take, in first-append order: a whole market's
        # connection has a thousand instruments, most with no trade in a given batch, and
        # take() would otherwise visit every one of them on every flush.
        self._touched: dict[str, SymbolTradesBuilder] = {}
        # symbol -> (decimals of the tick size, of the step size); None where unknown.
        self._increments: dict[str, tuple[int | None, int | None]] = {}
        self._refused: dict[str, list[int]] = {}
        self._stats = DecodeStats()
        # Frames and trades are counted here and copied into the stats when they are read:
        # two attribute updates per trade fewer on the hot path. Trades taken before the
        # pending ones are in _taken.
        self._frames = 0
        self._taken = 0
        self.pending = 0

    @property
    def stats(self) -> DecodeStats:
        """The running counts, frames and trades brought up to date."""
        stats = self._stats
        stats.frames = self._frames
        stats.trades = self._taken + self.pending
        return stats

    def set_increments(
        self, symbol: str, price_decimals: int | None, quantity_decimals: int | None
    ) -> None:
        """Refuse this symbol's trades with more decimals than its tick or step size."""
        self._increments[symbol] = (price_decimals, quantity_decimals)
        builder = self._builders.get(symbol)
        if builder is not None:
            builder.max_price_scale = price_decimals
            builder.max_quantity_scale = quantity_decimals

    def _builder(self, symbol: str) -> SymbolTradesBuilder:
        price_decimals, quantity_decimals = self._increments.get(symbol, (None, None))
        builder = self._builders[symbol] = SymbolTradesBuilder(
            self.exchange,
            symbol,
            max_price_scale=price_decimals,
            max_quantity_scale=quantity_decimals,
        )
        return builder

    def feed(self, frame: bytes | str, receive_time_ns: int | None = None) -> DecodeError | None:
        """Decode one frame, appending its trade if any; return the error when rejected."""
        self._frames += 1
        try:
            payload: _TradePayload
            try:
                combined = self._combined.decode(frame)
                payload = combined.data
                if self._fast_streams.get(combined.stream) is not type(payload):
                    raise _GeneralPath
            except (msgspec.MsgspecError, _GeneralPath):
                routed = self._route_frame(frame)
                if routed is None or isinstance(routed, DecodeError):
                    return routed
                payload = routed
            symbol = payload.s
            # Most frames are of an instrument already touched in this batch: one lookup.
            builder = self._touched.get(symbol)
            if builder is None:  # not `or`: that would call the builder's __len__ per trade
                builder = self._builders.get(symbol)
                if builder is None:
                    builder = self._builder(symbol)
                self._touched[symbol] = builder
            payload.parse_to_columns(
                builder, time.time_ns() if receive_time_ns is None else receive_time_ns
            )
        except _UnknownStreamError as exc:
            return self._reject(DecodeErrorKind.UNKNOWN_STREAM, str(exc), frame)
        except msgspec.ValidationError as exc:
            message = str(exc)
            kind = (
                DecodeErrorKind.MISSING_FIELD
                if "missing required field" in message
                else DecodeErrorKind.WRONG_TYPE
            )
            return self._reject(kind, message, frame)
        except msgspec.DecodeError as exc:
            return self._reject(DecodeErrorKind.BAD_JSON, str(exc), frame)
        except OffIncrementError as exc:
            self._refused.setdefault(exc.symbol, []).append(exc.trade_id)
            return self._reject(DecodeErrorKind.OFF_INCREMENT, str(exc), frame)
        except (InvalidTradeError, DecimalValueError, OverflowError) as exc:
            return self._reject(DecodeErrorKind.INVALID_VALUE, str(exc), frame)
        self.pending += 1
        return None

    def _route_frame(self, frame: bytes | str) -> _TradePayload | DecodeError | None:
        """The general path: a trade payload, None (ignored or a control reply), or the error."""
        head = self._head.decode(frame)
        if head.stream is not None and len(head.data):
            decoder, stream_type = self._routes.get(head.stream) or self._route(head.stream)
            if decoder is None:
                self._stats.ignored[stream_type] += 1
                return None
            payload: _TradePayload = decoder.decode(head.data)
            self._fast_streams[head.stream] = type(payload)
            return payload
        if head.e is not None:
            event_decoder = self._by_event.get(head.e)
            if event_decoder is None:
                return self._ignore_or_reject(head.e, frame)
            raw_payload: _TradePayload = event_decoder.decode(frame)
            return raw_payload
        if head.id is not None and (len(head.result) or len(head.error)):
            self._stats.control_replies += 1
            if len(head.error):
                return self._reject(DecodeErrorKind.EXCHANGE_ERROR, "error reply", frame)
            return None
        return self._reject(DecodeErrorKind.UNKNOWN_STREAM, "no stream or event", frame)

    def feed_many(
        self, frames: Iterable[bytes | str], receive_time_ns: int | None = None
    ) -> list[DecodeError]:
        """Decode many frames; return the rejected ones' errors in order."""
        errors: list[DecodeError] = []
        for frame in frames:
            error = self.feed(frame, receive_time_ns)
            if error is not None:
                errors.append(error)
        return errors

    def builders(self) -> dict[str, SymbolTradesBuilder]:
        """The live per-symbol builders, keyed by symbol (read-only use)."""
        return self._builders

    def take(self) -> list[market_pb2.SymbolTrades]:
        """Return one SymbolTrades per symbol with pending trades and clear them."""
        runs: list[market_pb2.SymbolTrades] = []
        for builder in self._touched.values():
            # A touched builder may hold nothing: its only trades were refused.
            if len(builder):
                runs.append(builder.to_proto())
                builder.clear()
        self._touched.clear()
        self._taken += self.pending
        self.pending = 0
        return runs

    def take_refused(self) -> dict[str, list[int]]:
        """Ids of trades refused off-increment since the last call, by symbol, and clear them."""
        refused, self._refused = self._refused, {}
        return refused

    def _route(self, stream: str) -> tuple[_AnyDecoder | None, str]:
        stream_type = _stream_type(stream)
        decoder = self._by_event.get(stream_type)
        if decoder is None and stream_type not in IGNORED_STREAM_TYPES:
            raise _UnknownStreamError(f"unknown stream {stream[:64]!r}")
        # Only recognised names are cached, so garbage names cannot grow the table.
        route = self._routes[stream] = (decoder, stream_type)
        return route

    def _ignore_or_reject(self, event: str, frame: bytes | str) -> DecodeError | None:
        if event in IGNORED_STREAM_TYPES:
            self._stats.ignored[event] += 1
            return None
        return self._reject(DecodeErrorKind.UNKNOWN_STREAM, f"unknown event {event[:64]!r}", frame)

    def _reject(self, kind: DecodeErrorKind, message: str, frame: bytes | str) -> DecodeError:
        error = DecodeError(kind, message, _sample(frame))
        self._stats.errors[kind] += 1
        self._stats.last_errors[kind] = error
        return error


class _UnknownStreamError(Exception):
    pass


class _GeneralPath(Exception):
    """The frame is not a trade of a stream already routed: take the general path."""
