"""Columnar per-instrument trade builder that becomes one exact ``SymbolTrades`` message.

Trades are appended into typed ``array`` columns (machine ints, no per-trade Python
objects kept) and turned into protobuf once per batch. Prices and quantities arrive as
the exchange's decimal strings and are kept exactly as int64 mantissas.

While appending, a value keeps the decimals it was written with (Binance spot writes a
fixed "61837.63000000"), so the hot path rarely changes scale; when a finer value arrives
the earlier rows of that column are multiplied up, exactly. When the run becomes a
message, the trailing zeros every row shares are divided out, so the run's scale is the
most significant decimals seen in it ("61837.63000000" -> 6183763 at price_scale 2).
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np
import numpy.typing as npt

from tickmesh.collector.binance.small_enums import append_small_enums
from tickmesh.core.decimals import (
    INT64_MAX,
    MAX_SCALE,
    DecimalValueError,
    parse_decimal,
    power_of_ten,
)
from tickmesh.v2 import market_pb2

# Prices and quantities repeat heavily (a taker sweeping one level, round lots, the same lot
# sizes on many instruments), so the values read are remembered: a hit needs no parse. One
# cache of each serves every builder of the process, keyed by the text as written, with the
# value's decimals without trailing zeros so that each builder still checks its own tick and
# step size. A cache per builder of up to 65,536 values each grew the whole market's
# collector (2,000 builders) by 5 MB a minute, towards gigabytes.
CACHE_LIMIT = 131_072
# text -> (mantissa, scale as written, significant decimals); only positive values.
_Cached = tuple[int, int, int]
_PRICES: dict[str, _Cached] = {}
_QUANTITIES: dict[str, _Cached] = {}


def cached_values() -> int:
    """How many prices and quantities the process's caches hold."""
    return len(_PRICES) + len(_QUANTITIES)


def forget_cached_values() -> None:
    """Empty the process's caches (a benchmark of a cold start)."""
    _PRICES.clear()
    _QUANTITIES.clear()


_POWERS = tuple(power_of_ten(exponent) for exponent in range(MAX_SCALE + 1))
_UNKNOWN_LIMIT = MAX_SCALE + 1
# A plain decimal this long is below 10**18 (within int64) with at most MAX_SCALE decimals.
_SURE_CHARS = min(len(str(INT64_MAX)) - 1, MAX_SCALE + 2)
TYPE_MARKET = market_pb2.TRADE_TYPE_MARKET
_MARKET_BYTE = bytes([TYPE_MARKET])


class InvalidTradeError(ValueError):
    """A trade payload that decoded but carries impossible values; the message names the field."""


class OffIncrementError(InvalidTradeError):
    """A price or quantity with more decimals than the instrument's tick or step size."""

    def __init__(self, message: str, symbol: str, trade_id: int) -> None:
        super().__init__(message)
        self.symbol = symbol
        self.trade_id = trade_id


def read_written(text: str, field: str) -> tuple[int, int]:
    """(mantissa, scale as written) of a plain decimal, exactly: "61837.630" gives (61837630, 3).

    Anything but plain ASCII digits with an optional fraction goes through `parse_decimal`,
    which refuses it naming `field`, or reads it with trailing zeros dropped.
    """
    whole, dot, fraction = text.partition(".")
    digits = whole + fraction
    # isdigit alone accepts other scripts' digits; isascii keeps it to 0-9.
    if digits.isdigit() and digits.isascii() and whole and (fraction or not dot):
        scale = len(fraction)
        mantissa = int(digits)
        if mantissa <= INT64_MAX and scale <= MAX_SCALE:
            return mantissa, scale
    if not text.isascii():
        # parse_decimal's \d would take other scripts' digits ("١٢"); the wire has only ASCII.
        raise DecimalValueError(f"{field}: {text[:40]!r} is not a plain decimal number")
    return parse_decimal(text, field)


def significant_decimals(mantissa: int, scale: int) -> int:
    """Decimals of mantissa * 10**-scale without trailing zeros (6183763000000, 8 gives 2)."""
    while scale and not mantissa % 10:
        mantissa //= 10
        scale -= 1
    return scale


# Runs up to this many rows are rescaled and normalised in plain Python: for the one or two
# trades a thin instrument has per batch, numpy's per-call overhead (frombuffer, a ufunc,
# tobytes) costs several times the arithmetic. Longer runs take the vectorised path.
_SMALL_RUN = 32


def _rescaled(column: array[int], factor_exponent: int, field: str) -> array[int]:
    """The column's mantissas multiplied by 10**factor_exponent; DecimalValueError if too big."""
    factor = power_of_ten(factor_exponent)
    if len(column) <= _SMALL_RUN:
        if column and max(map(abs, column)) > INT64_MAX // factor:
            raise DecimalValueError(f"{field}: run cannot hold {factor_exponent} more decimals")
        return array("q", [value * factor for value in column])
    values = np.frombuffer(column, dtype=np.int64)
    if int(np.abs(values).max()) > INT64_MAX // factor:
        raise DecimalValueError(f"{field}: run cannot hold {factor_exponent} more decimals")
    scaled = array("q")
    scaled.frombytes((values * factor).tobytes())
    return scaled


def _normalized(column: array[int], scale: int) -> tuple[array[int], int]:
    """The column with the trailing zeros all its rows share divided out, and its scale."""
    if not len(column):
        return column, 0
    small = len(column) <= _SMALL_RUN
    # All rows end in k zeros exactly when their greatest common divisor does: one pass over
    # the column instead of a remainder and a division per zero (spot writes six of them).
    # math.gcd and np.gcd agree (non-negative; 0 only when every row is 0).
    if small:
        common = math.gcd(*column)
    else:
        values = np.frombuffer(column, dtype=np.int64)
        common = int(np.gcd.reduce(values))
    zeros = 0
    while zeros < scale and (common == 0 or common % 10 == 0):
        common //= 10
        zeros += 1
    if not zeros:
        return column, scale
    divisor = power_of_ten(zeros)
    if small:
        return array("q", [value // divisor for value in column]), scale - zeros
    result = array("q")
    result.frombytes((values // divisor).tobytes())
    return result, scale - zeros


class SymbolTradesBuilder:
    """Accumulates one instrument's trades column by column, prices and quantities exact."""

    __slots__ = (
        "_counts",
        "_event_ns",
        "_ids",
        "_plain",
        "_price_limit",
        "_prices",
        "_quantities",
        "_quantity_limit",
        "_receive_ns",
        "_sides",
        "_types",
        "exchange",
        "price_field",
        "price_scale",
        "quantity_field",
        "quantity_scale",
        "symbol",
    )

    def __init__(
        self,
        exchange: market_pb2.Exchange.ValueType,
        symbol: str,
        *,
        price_field: str = "p",
        quantity_field: str = "q",
        max_price_scale: int | None = None,
        max_quantity_scale: int | None = None,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        # Field names as the wire spells them, so an error names what the exchange sent.
        self.price_field = price_field
        self.quantity_field = quantity_field
        # Decimals of the tick and step size when the registry knows them (None: unknown).
        self._price_limit = _UNKNOWN_LIMIT
        self._quantity_limit = _UNKNOWN_LIMIT
        self.max_price_scale = max_price_scale
        self.max_quantity_scale = max_quantity_scale
        self.price_scale = 0
        self.quantity_scale = 0
        self._ids = array("q")
        self._prices = array("q")
        self._quantities = array("q")
        self._sides = array("b")
        self._event_ns = array("q")
        self._receive_ns = array("q")
        # Types and counts are stored only once the run holds a trade that is not one market
        # trade: a spot @trade run never does, and two appends per trade for columns that
        # to_proto writes in one step were a quarter of the column work.
        self._plain = True
        self._types = array("b")
        self._counts = array("I")

    def __len__(self) -> int:
        return len(self._ids)

    def append(
        self,
        trade_id: int,
        price: str,
        quantity: str,
        side: int,
        event_time_ns: int,
        receive_time_ns: int,
        trade_type: int,
        trade_count: int,
        market: bool = True,
    ) -> None:
        """Append one trade (or one aggregate of trade_count trades); all columns or none.

        A market trade must have a positive price and quantity; a non-market one (USD-M "NA"
        events carry p=0, q=0) may be zero. Either must be within the instrument's tick and
        step size (a limit lowered mid-run applies from the next run, at most one batch later).
        """
        # The hot path: two dict hits within the instrument's limits, and the appends.
        price_value = _PRICES.get(price)
        if price_value is None or price_value[2] > self._price_limit:
            price_value = self._read(
                trade_id, price, market, self.price_field, "price", "tick",
                self._price_limit, _PRICES,
            )  # fmt: skip
        quantity_value = _QUANTITIES.get(quantity)
        if quantity_value is None or quantity_value[2] > self._quantity_limit:
            quantity_value = self._read(
                trade_id, quantity, market, self.quantity_field, "quantity", "step",
                self._quantity_limit, _QUANTITIES,
            )  # fmt: skip
        price_mantissa, price_scale, _ = price_value
        quantity_mantissa, quantity_scale, _ = quantity_value
        run_scale = self.price_scale
        if price_scale != run_scale:
            if price_scale < run_scale:
                price_mantissa *= _POWERS[run_scale - price_scale]
            else:
                # An empty run (every run's first trade after clear()) has nothing to rescale.
                if self._prices:
                    self._prices = _rescaled(
                        self._prices, price_scale - run_scale, self.price_field
                    )
                self.price_scale = price_scale
        run_scale = self.quantity_scale
        if quantity_scale != run_scale:
            if quantity_scale < run_scale:
                quantity_mantissa *= _POWERS[run_scale - quantity_scale]
            else:
                if self._quantities:
                    self._quantities = _rescaled(
                        self._quantities, quantity_scale - run_scale, self.quantity_field
                    )
                self.quantity_scale = quantity_scale
        try:
            self._ids.append(trade_id)
            self._prices.append(price_mantissa)
            self._quantities.append(quantity_mantissa)
            self._sides.append(side)
            self._event_ns.append(event_time_ns)
            self._receive_ns.append(receive_time_ns)
            if not self._plain:
                self._types.append(trade_type)
                self._counts.append(trade_count)
            elif trade_type != TYPE_MARKET or trade_count != 1:
                self._store_kinds(trade_type, trade_count)
        except (OverflowError, TypeError):
            # A value that does not fit its column (an id beyond int64, a mantissa that the
            # run's scale pushes past int64) must not leave the columns with different lengths.
            self._truncate(len(self._receive_ns) if self._plain else len(self._counts))
            raise

    def _store_kinds(self, trade_type: int, trade_count: int) -> None:
        """Store the implied types and counts of the rows so far, then this row's."""
        rows = len(self._receive_ns) - 1
        self._types = array("b", [TYPE_MARKET]) * rows
        self._counts = array("I", [1]) * rows
        self._plain = False
        self._types.append(trade_type)
        self._counts.append(trade_count)

    @property
    def max_price_scale(self) -> int | None:
        """Decimals of the tick size (None: unknown, any price up to MAX_SCALE decimals)."""
        return None if self._price_limit == _UNKNOWN_LIMIT else self._price_limit

    @max_price_scale.setter
    def max_price_scale(self, decimals: int | None) -> None:
        self._price_limit = _UNKNOWN_LIMIT if decimals is None else decimals

    @property
    def max_quantity_scale(self) -> int | None:
        """Decimals of the step size (None: unknown)."""
        return None if self._quantity_limit == _UNKNOWN_LIMIT else self._quantity_limit

    @max_quantity_scale.setter
    def max_quantity_scale(self, decimals: int | None) -> None:
        self._quantity_limit = _UNKNOWN_LIMIT if decimals is None else decimals

    def _read(
        self,
        trade_id: int,
        text: str,
        market: bool,
        field: str,
        noun: str,
        increment: str,
        limit: int,
        cache: dict[str, _Cached],
    ) -> _Cached:
        """Parse and check a value not in the cache (or past this instrument's limit there);
        cache it if it is positive."""
        # Every value a fresh builder sees misses the cache (two in five of a first batch), so
        # read_written's plain case is repeated here, in the fewest steps: ASCII digits with
        # an optional fraction, at most _SURE_CHARS long so that it fits int64 and MAX_SCALE.
        whole, dot, fraction = text.partition(".")
        if (
            whole.isdigit()
            and (fraction.isdigit() or not dot)
            and text.isascii()
            and len(text) <= _SURE_CHARS
        ):
            mantissa, scale = int(whole + fraction), len(fraction)
            significant = len(fraction.rstrip("0"))
        else:
            mantissa, scale = read_written(text, field)
            significant = significant_decimals(mantissa, scale)
        if market and mantissa <= 0:
            raise InvalidTradeError(f"{field}: {text!r} is not a positive {noun}")
        # The cache serves instruments of every tick and step size: it keeps the count.
        if significant > limit:
            raise OffIncrementError(
                f"{field}: {text!r} has {significant} decimals, more than the {increment} "
                f"size of {self.symbol} allows ({limit})",
                self.symbol,
                trade_id,
            )
        value = (mantissa, scale, significant)
        if mantissa > 0:  # zero (USD-M "NA" events) is valid only for non-market trades
            # Bounded on insert: an import builds runs of a million rows and never clears.
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[text] = value
        return value

    def _truncate(self, length: int) -> None:
        for column in self._columns():
            del column[length:]

    def to_proto(self) -> market_pb2.SymbolTrades:
        """Build the SymbolTrades message; trade_counts is left empty when all are 1."""
        # Columns go to protobuf as lists: upb reads a list faster than it iterates an array,
        # more than paying for array.tolist() (a 1,000-trade spot run: 164 -> 154 us).
        rows = len(self._ids)
        counts = self._counts if not self._plain and self._counts.count(1) != rows else ()
        prices, price_scale = _normalized(self._prices, self.price_scale)
        quantities, quantity_scale = _normalized(self._quantities, self.quantity_scale)
        message = market_pb2.SymbolTrades(
            exchange=self.exchange,
            symbol=self.symbol,
            trade_ids=self._ids.tolist(),
            prices=prices.tolist(),
            quantities=quantities.tolist(),
            event_time_ns=self._event_ns.tolist(),
            receive_time_ns=self._receive_ns.tolist(),
            trade_counts=counts,
            price_scale=price_scale,
            quantity_scale=quantity_scale,
        )
        types = _MARKET_BYTE * rows if self._plain else self._types.tobytes()
        append_small_enums(message, self._sides.tobytes(), types)
        return message

    def trade_ids(self) -> npt.NDArray[np.int64]:
        """A numpy copy of the trade id column."""
        # A copy, because a live buffer export would forbid the array from growing.
        return np.frombuffer(self._ids, dtype=np.int64).copy()

    def prices(self) -> tuple[npt.NDArray[np.int64], int]:
        """A copy of the price mantissas and their scale, as the message will carry them."""
        values, scale = _normalized(self._prices, self.price_scale)
        return np.frombuffer(values, dtype=np.int64).copy(), scale

    def clear(self) -> None:
        """Drop every trade, keeping the instrument, its increments and the decimal cache."""
        self._truncate(0)
        self._plain = True
        self.price_scale = 0
        self.quantity_scale = 0

    def _columns(self) -> tuple[array[Any], ...]:
        return (
            self._ids,
            self._prices,
            self._quantities,
            self._sides,
            self._event_ns,
            self._receive_ns,
            self._types,
            self._counts,
        )
