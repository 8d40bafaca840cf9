"""Binance's public REST market-data endpoints (spot /api/v3, USD-M /fapi/v1).

Each request is charged its Binance weight against a per-venue window and
answered with X-MBX-USED-WEIGHT-1M. Over the limit the answer is 429 with
Retry-After; a client that keeps calling through its 429s is banned with 418.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from tickmesh.collector.simulator.config import Market, SimulatorConfig
from tickmesh.collector.simulator.frames import agg_trade_row, historical_trade_row
from tickmesh.collector.simulator.hub import SimulatorStats
from tickmesh.collector.simulator.ledger import KLINE_INTERVALS_MS, SymbolLedger, TradeLedger

_Handler = Callable[[web.Request, Market], Awaitable[web.Response]]


class BinanceApiError(Exception):
    """A Binance error answer: HTTP status plus Binance's numeric code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(slots=True)
class _Window:
    started: float = 0.0
    used: int = 0
    rejected: int = 0
    banned_until: float = 0.0


class WeightLimiter:
    """Binance's request-weight accounting for one venue."""

    def __init__(self, limit: int, window_s: float, requests_before_ban: int, ban_s: float) -> None:
        self.limit = limit
        self._window_s = window_s
        self._requests_before_ban = requests_before_ban
        self._ban_s = ban_s
        self._state = _Window(started=time.monotonic())

    @property
    def used(self) -> int:
        """Weight used in the current window."""
        self._roll(time.monotonic())
        return self._state.used

    def _roll(self, now: float) -> None:
        if now - self._state.started >= self._window_s:
            # Binance resets its counters at each window boundary; a ban outlives it.
            self._state = _Window(now, banned_until=self._state.banned_until)

    def charge(self, weight: int) -> tuple[int, int, float]:
        """Charge a request: returns (status 200/429/418, weight used, retry-after seconds)."""
        now = time.monotonic()
        self._roll(now)
        state = self._state
        if now < state.banned_until:
            return 418, state.used, state.banned_until - now
        if state.used + weight > self.limit:
            state.rejected += 1
            if state.rejected > self._requests_before_ban:
                state.banned_until = now + self._ban_s
                return 418, state.used, self._ban_s
            return 429, state.used, state.started + self._window_s - now
        state.used += weight
        return 200, state.used, 0.0


def _int_param(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceApiError(
            400, -1100, f"Illegal characters found in parameter '{name}'."
        ) from None


def _limit(request: web.Request, default: int, maximum: int) -> int:
    value = _int_param(request, "limit", default)
    assert value is not None
    if not 1 <= value <= maximum:
        raise BinanceApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return value


class RestApi:
    """The REST routes, bound to the ledger, the limiters and the fault settings."""

    def __init__(
        self,
        ledger: TradeLedger,
        config: SimulatorConfig,
        stats: SimulatorStats,
        listed: dict[Market, set[str]],
        increments: dict[tuple[Market, str], tuple[str, str]] | None = None,
    ) -> None:
        self._ledger = ledger
        self._config = config
        self._stats = stats
        self._listed = listed
        # Tick and step size per symbol; a symbol without them is listed with no filters.
        self._increments = increments or {}
        self.limiters = {
            Market.SPOT: WeightLimiter(
                config.spot_weight_limit,
                config.weight_window_s,
                config.requests_before_ban,
                config.ban_s,
            ),
            Market.USDM: WeightLimiter(
                config.futures_weight_limit,
                config.weight_window_s,
                config.requests_before_ban,
                config.ban_s,
            ),
        }

    def listed(self, market: Market) -> set[str]:
        """The symbols a venue lists."""
        return set(self._listed[market])

    def routes(self) -> list[web.RouteDef]:
        """Every endpoint under /api/v3 and /fapi/v1."""
        endpoints: dict[str, _Handler] = {
            "ping": self._ping,
            "time": self._time,
            "exchangeInfo": self._exchange_info,
            "historicalTrades": self._historical_trades,
            "aggTrades": self._agg_trades,
            "klines": self._klines,
        }
        routes = []
        for prefix, market in (("/api/v3/", Market.SPOT), ("/fapi/v1/", Market.USDM)):
            for name, handler in endpoints.items():
                routes.append(web.get(prefix + name, self._wrap(name, handler, market)))
        return routes

    def _wrap(
        self, name: str, handler: _Handler, market: Market
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            self._stats.rest_requests += 1
            limiter = self.limiters[market]
            faults = self._config.faults
            if faults.rest_429 > 0:
                faults.rest_429 -= 1
                return self._refuse(429, limiter.used, faults.retry_after_s)
            try:
                status, used, retry_after = limiter.charge(self._weight(name, market, request))
                if status != 200:
                    return self._refuse(status, used, retry_after)
                response = await handler(request, market)
            except BinanceApiError as exc:
                body = json.dumps({"code": exc.code, "msg": exc.message})
                response = web.Response(
                    status=exc.status, text=body, content_type="application/json"
                )
                used = limiter.used
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
            return response

        return endpoint

    def _refuse(self, status: int, used: int, retry_after: float) -> web.Response:
        if status == 418:
            self._stats.rest_418 += 1
            message = "Way too many requests; IP banned until the Retry-After time."
        else:
            self._stats.rest_429 += 1
            message = (
                "Too many requests; current limit is exceeded, please use the Retry-After time."
            )
        return web.Response(
            status=status,
            text=json.dumps({"code": -1003, "msg": message}),
            content_type="application/json",
            headers={
                "Retry-After": str(max(1, math.ceil(retry_after))),
                "X-MBX-USED-WEIGHT-1M": str(used),
            },
        )

    @staticmethod
    def _weight(name: str, market: Market, request: web.Request) -> int:
        if market is Market.SPOT:
            return {"exchangeInfo": 20, "historicalTrades": 25, "aggTrades": 2, "klines": 2}.get(
                name, 1
            )
        if name == "klines":
            limit = _int_param(request, "limit", 500) or 500
            return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
        return {"historicalTrades": 20, "aggTrades": 20}.get(name, 1)

    def _symbol(self, request: web.Request, market: Market) -> SymbolLedger:
        symbol = request.query.get("symbol")
        if not symbol:
            raise BinanceApiError(400, -1102, "Mandatory parameter 'symbol' was not sent.")
        ledger = self._ledger.get(market, symbol)
        if ledger is None:
            raise BinanceApiError(400, -1121, "Invalid symbol.")
        return ledger

    async def _ping(self, request: web.Request, market: Market) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request, market: Market) -> web.Response:
        return web.json_response({"serverTime": time.time_ns() // 1_000_000})

    async def _exchange_info(self, request: web.Request, market: Market) -> web.Response:
        wanted = request.query.get("symbol")
        many = request.query.get("symbols")
        names = sorted(self._listed[market] | set(self._ledger.symbols(market)))
        if wanted:
            names = [name for name in names if name == wanted.upper()]
        elif many:
            try:
                asked = {str(name).upper() for name in json.loads(many)}
            except (ValueError, TypeError):
                raise BinanceApiError(
                    400, -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
            names = [name for name in names if name in asked]
        limiter = self.limiters[market]
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": time.time_ns() // 1_000_000,
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": limiter.limit,
                    }
                ],
                "exchangeFilters": [],
                "symbols": [
                    _symbol_info(name, self._increments.get((market, name))) for name in names
                ],
            }
        )

    async def _historical_trades(self, request: web.Request, market: Market) -> web.Response:
        ledger = self._symbol(request, market)
        limit = _limit(request, 500, 1000)
        from_id = _int_param(request, "fromId")
        # USD-M returns market trades only: no insurance-fund or ADL executions.
        trades = ledger.historical(from_id, limit, market_only=market is Market.USDM)
        return web.json_response([historical_trade_row(trade) for trade in trades])

    async def _agg_trades(self, request: web.Request, market: Market) -> web.Response:
        ledger = self._symbol(request, market)
        limit = _limit(request, 500, 1000)
        rows = ledger.agg_trades(
            _int_param(request, "fromId"),
            _int_param(request, "startTime"),
            _int_param(request, "endTime"),
            limit,
        )
        return web.json_response([agg_trade_row(market, agg) for agg in rows])

    async def _klines(self, request: web.Request, market: Market) -> web.Response:
        ledger = self._symbol(request, market)
        interval_ms = KLINE_INTERVALS_MS.get(request.query.get("interval", ""))
        if interval_ms is None:
            raise BinanceApiError(400, -1120, "Invalid interval.")
        limit = _limit(request, 500, 1000 if market is Market.SPOT else 1500)
        rows = ledger.klines(
            interval_ms, _int_param(request, "startTime"), _int_param(request, "endTime"), limit
        )
        return web.json_response(rows)


_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "TRY", "EUR", "RUB")


def _symbol_info(symbol: str, increments: tuple[str, str] | None) -> dict[str, object]:
    quote = next((q for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), symbol[-4:])
    filters: list[dict[str, str]] = []
    if increments is not None:
        tick, step = increments
        filters = [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00",
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00", "stepSize": step},
        ]
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": symbol[: -len(quote)],
        "quoteAsset": quote,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "filters": filters,
    }
