"""Tick and step sizes from Binance exchangeInfo (PRICE_FILTER tickSize, LOT_SIZE stepSize).

The registry keeps them per instrument so the collector can refuse a trade price or
quantity finer than the venue allows, rather than store a value the venue cannot have.
A venue that does not answer leaves them unknown; the collector asks again later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
import msgspec

from tickmesh.core.decimals import DecimalValueError, format_decimal, parse_decimal
from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)

# Spot symbols asked per exchangeInfo request: 100 names keep the URL near 2 KB.
SPOT_SYMBOLS_PER_REQUEST = 100


class _Filter(msgspec.Struct):
    filterType: str  # noqa: N815 - Binance's field name
    tickSize: str | None = None  # noqa: N815
    stepSize: str | None = None  # noqa: N815


class _SymbolInfo(msgspec.Struct):
    symbol: str
    filters: list[_Filter] = []


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_SymbolInfo] = []


_decoder = msgspec.json.Decoder(_ExchangeInfo)


@dataclass(frozen=True, slots=True)
class Increments:
    """A symbol's tick size and step size as plain decimal strings ("0.01", "0.00001")."""

    price: str
    quantity: str


def _plain(text: str, field: str) -> str:
    return format_decimal(*parse_decimal(text, field))


def parse_exchange_info(body: bytes | str) -> dict[str, Increments]:
    """Each listed symbol's increments; symbols without both filters are left out."""
    found: dict[str, Increments] = {}
    for info in _decoder.decode(body).symbols:
        tick = next((f.tickSize for f in info.filters if f.filterType == "PRICE_FILTER"), None)
        step = next((f.stepSize for f in info.filters if f.filterType == "LOT_SIZE"), None)
        if tick is None or step is None:
            continue
        try:
            found[info.symbol] = Increments(_plain(tick, "tickSize"), _plain(step, "stepSize"))
        except DecimalValueError as error:
            log.warning("exchangeInfo: %s: %s", info.symbol, error)
    return found


class ExchangeInfoClient:
    """Reads exchangeInfo of Binance spot (/v3) and USD-M (/v1) from the configured roots."""

    def __init__(self, api_urls: dict[int, str], timeout_s: float = 5.0) -> None:
        self._api_urls = api_urls
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def _url(self, exchange: int) -> str | None:
        root = self._api_urls.get(exchange)
        if root is None:
            return None
        version = "v1" if exchange == market_pb2.EXCHANGE_BINANCE_USDM else "v3"
        return f"{root.rstrip('/')}/{version}/exchangeInfo"

    async def increments(self, exchange: int, symbols: list[str]) -> dict[str, Increments]:
        """Increments of the given symbols on a venue; {} when it cannot be asked or answers badly."""
        url = self._url(exchange)
        if url is None or not symbols:
            return {}
        # USD-M lists every symbol in one answer; spot takes a symbol list in the query string,
        # which servers cap at about 8 KB, so a whole market is asked SPOT_SYMBOLS_PER_REQUEST
        # at a time (each request weighs 20 of spot's 6,000 a minute).
        if exchange == market_pb2.EXCHANGE_BINANCE_USDM:
            queries: list[dict[str, str]] = [{}]
        else:
            names = sorted(symbols)
            queries = [
                {"symbols": msgspec.json.encode(names[at : at + SPOT_SYMBOLS_PER_REQUEST]).decode()}
                for at in range(0, len(names), SPOT_SYMBOLS_PER_REQUEST)
            ]
        listed: dict[str, Increments] = {}
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            for params in queries:
                answer = await self._ask(session, url, params)
                if answer is None:
                    break  # the venue is unreachable or refusing: the rest waits for the retry
                listed.update(answer)
        return {symbol: listed[symbol] for symbol in symbols if symbol in listed}

    async def _ask(
        self, session: aiohttp.ClientSession, url: str, params: dict[str, str]
    ) -> dict[str, Increments] | None:
        """One exchangeInfo request's increments; None when it fails (logged)."""
        try:
            async with session.get(url, params=params) as response:
                if response.status != 200:
                    log.info("exchangeInfo at %s answered HTTP %d", url, response.status)
                    return None
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            log.info("exchangeInfo at %s cannot be read: %s", url, error)
            return None
        try:
            return parse_exchange_info(body)
        except msgspec.DecodeError as error:
            log.warning("exchangeInfo at %s is not what Binance sends: %s", url, error)
            return None
