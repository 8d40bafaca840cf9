"""An instrument is a symbol on one venue; its one text form is "<venue>:<symbol>".

BTCUSDT on Binance spot and BTCUSDT on Binance USD-M are different instruments with
different trades and prices, so every key, request, path and subscription names both.
The text form ("binance_usdm:BTCUSDT") is what REST paths, WebSocket messages, the CLI,
Redis keys and the shard rule use; gRPC carries the `tickmesh.v2.Instrument` message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tickmesh.core.exchanges import PROTO_BY_LABEL, exchange_label, exchange_proto
from tickmesh.v2 import market_pb2

SYMBOL_PATTERN = r"[A-Z0-9.\-^=]{1,20}"
VENUE_PATTERN = "|".join(sorted(PROTO_BY_LABEL))
# What a REST path or a JSON field holding an instrument must match.
INSTRUMENT_PATTERN = rf"^({VENUE_PATTERN}):{SYMBOL_PATTERN}$"
_SYMBOL = re.compile(rf"^{SYMBOL_PATTERN}$")
SEPARATOR = ":"


class InstrumentError(ValueError):
    """An instrument id, venue or symbol that is malformed or unknown; the message names it."""


def check_symbol(symbol: str) -> str:
    """Return `symbol` if it is a valid venue symbol; InstrumentError saying what is allowed."""
    if _SYMBOL.match(symbol) is None:
        raise InstrumentError(
            f"symbol {symbol!r} must be 1-20 characters of A-Z, 0-9, '.', '-', '^', '='"
        )
    return symbol


@dataclass(frozen=True, slots=True, order=True)
class InstrumentId:
    """A venue (the proto Exchange value) and the venue's own symbol."""

    exchange: int
    symbol: str

    def __post_init__(self) -> None:
        if self.exchange not in market_pb2.Exchange.values() or not self.exchange:
            raise InstrumentError(f"unknown exchange enum value {self.exchange}")
        check_symbol(self.symbol)

    @property
    def venue(self) -> str:
        """The venue's label, as stored and as written in the text form ("binance_usdm")."""
        return exchange_label(self.exchange)

    def __str__(self) -> str:
        return f"{self.venue}{SEPARATOR}{self.symbol}"

    @classmethod
    def parse(cls, text: str) -> InstrumentId:
        """Read "<venue>:<symbol>"; InstrumentError naming the venues accepted or the bad part."""
        venue, separator, symbol = text.partition(SEPARATOR)
        if not separator:
            raise InstrumentError(
                f"instrument {text!r} must be <venue>:<symbol>, e.g. binance_usdm:BTCUSDT"
            )
        try:
            exchange = exchange_proto(venue)
        except ValueError as error:
            raise InstrumentError(f"instrument {text!r}: {error}") from None
        return cls(exchange, check_symbol(symbol))

    @classmethod
    def of(cls, venue: str, symbol: str) -> InstrumentId:
        """Build from a stored venue label and symbol (a database row)."""
        try:
            return cls(exchange_proto(venue), symbol)
        except ValueError as error:
            raise InstrumentError(str(error)) from None

    @classmethod
    def from_proto(cls, message: market_pb2.Instrument) -> InstrumentId:
        """Read a `tickmesh.v2.Instrument`; InstrumentError for an unset venue or a bad symbol."""
        if message.exchange == market_pb2.EXCHANGE_UNSPECIFIED:
            raise InstrumentError(f"instrument {message.symbol!r}: exchange is unspecified")
        return cls(int(message.exchange), message.symbol)

    def to_proto(self) -> market_pb2.Instrument:
        """Return the `tickmesh.v2.Instrument` message."""
        return market_pb2.Instrument(
            exchange=market_pb2.Exchange.ValueType(self.exchange), symbol=self.symbol
        )
