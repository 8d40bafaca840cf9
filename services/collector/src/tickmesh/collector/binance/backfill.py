"""Gap backfill over Binance REST: historicalTrades (or aggTrades) by id, within the weight limits.

The backfill asks the gap book for due gaps (an id jump older than a short grace, so a
merely reordered frame is not fetched) and for tails after reconnects, and fetches pages
of up to 1000 trades from the first missing id. Only ids never delivered pass into the
ingest stream. Ids a page covers but does not return do not exist as market trades (USD-M
historicalTrades leaves out insurance-fund and ADL executions) and are resolved. It
fetches only while the ingest stream is up and has room for a page, so refilling an
overflow cannot overflow again. Requests are paced by a weight budget (aiolimiter); a
429 or 418 pauses the venue for its Retry-After; other errors are retried with backoff
and the gap stays recorded until filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiolimiter import AsyncLimiter
from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from tickmesh.collector.binance.columns import OffIncrementError
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.binance.parse import (
    Increments,
    RestPageError,
    parse_rest_agg_trades,
    parse_rest_historical_trades,
)
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient
from tickmesh.core.exchanges import exchange_label
from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)

# Binance request weights: (historicalTrades, aggTrades) per venue.
_WEIGHTS = {
    market_pb2.EXCHANGE_BINANCE_SPOT: (25, 2),
    market_pb2.EXCHANGE_BINANCE_USDM: (20, 20),
}


class RestRateLimited(Exception):
    """Binance answered 429 or 418; retry after `retry_after_s`."""

    def __init__(self, status: int, retry_after_s: float) -> None:
        super().__init__(f"HTTP {status}, retry after {retry_after_s}s")
        self.status = status
        self.retry_after_s = retry_after_s


class TradePageFetcher(Protocol):
    """Fetches one page of trades of a symbol from an id."""

    async def fetch(self, symbol: str, from_id: int, limit: int) -> market_pb2.SymbolTrades:
        """Up to `limit` trades with ids from `from_id` (RestRateLimited on 429/418)."""
        ...


@dataclass(frozen=True, slots=True)
class RestConfig:
    """A venue's REST root and budget."""

    api_url: str
    exchange: market_pb2.Exchange.ValueType
    aggregated: bool = False
    weight_per_minute: int = 6000
    # Share of the venue's budget the backfill may use (the rest is left for other clients).
    budget_share: float = 0.5


class BinanceRestFetcher:
    """Pages through python-binance's AsyncClient, paced by the venue's request weights."""

    def __init__(
        self,
        config: RestConfig,
        increments: Mapping[str, Increments] | None = None,
        on_refused: Callable[[str, OffIncrementError], None] | None = None,
    ) -> None:
        self._config = config
        # The live map of each symbol's tick/step decimals, shared with the stream source.
        self._increments: Mapping[str, Increments] = increments if increments is not None else {}
        self._on_refused = on_refused
        futures = config.exchange == market_pb2.EXCHANGE_BINANCE_USDM
        # python-binance has no URL argument: a subclass carries the (simulator's) roots.
        overrides = {"FUTURES_URL": config.api_url} if futures else {"API_URL": config.api_url}
        client_class = type("ConfiguredAsyncClient", (AsyncClient,), overrides)
        self._client: Any = client_class()
        self._futures = futures
        budget = max(1.0, config.weight_per_minute * config.budget_share)
        self._limiter = AsyncLimiter(budget, 60.0)
        historical, aggregated = _WEIGHTS.get(config.exchange, (25, 2))
        self._weight = min(aggregated if config.aggregated else historical, budget)
        self._paused_until = 0.0

    async def fetch(self, symbol: str, from_id: int, limit: int) -> market_pb2.SymbolTrades:
        """One page; RestRateLimited on 429/418, RestPageError for a bad page."""
        wait = self._paused_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self._limiter.acquire(self._weight)
        params = {"symbol": symbol, "fromId": from_id, "limit": limit}
        client = self._client
        try:
            if self._config.aggregated:
                call = (
                    client.futures_aggregate_trades
                    if self._futures
                    else client.get_aggregate_trades
                )
            else:
                call = (
                    client.futures_historical_trades
                    if self._futures
                    else client.get_historical_trades
                )
            rows = await call(**params)
        except BinanceAPIException as error:
            if error.status_code in (418, 429):
                retry_after = _retry_after(error)
                self._paused_until = time.monotonic() + retry_after
                raise RestRateLimited(error.status_code, retry_after) from error
            raise
        parse = parse_rest_agg_trades if self._config.aggregated else parse_rest_historical_trades
        refused: list[OffIncrementError] = []
        builder = parse(
            rows,
            self._config.exchange,
            symbol,
            increments=self._increments.get(symbol, (None, None)),
            refused=refused,
        )
        if self._on_refused is not None:
            for refusal in refused:
                self._on_refused(symbol, refusal)
        return builder.to_proto()

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._client.close_connection()


def _retry_after(error: BinanceAPIException) -> float:
    headers = getattr(error.response, "headers", None) or {}
    try:
        return max(1.0, float(headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


class Backfiller:
    """Refills recorded gaps of one venue's symbols over REST."""

    def __init__(
        self,
        exchange: market_pb2.Exchange.ValueType,
        fetcher: TradePageFetcher,
        gaps: GapBook,
        ingest: IngestClient,
        metrics: CollectorMetrics,
        grace_s: float = 0.5,
        page_size: int = 1000,
        retry_max_s: float = 30.0,
    ) -> None:
        self._exchange = exchange
        self._source = exchange_label(exchange)
        self._fetcher = fetcher
        self._gaps = gaps
        self._ingest = ingest
        self._metrics = metrics
        self._grace_s = grace_s
        self._page_size = page_size
        self._retry_max_s = retry_max_s
        self._failures = 0

    async def run(self) -> None:
        """Backfill until cancelled."""
        while True:
            due = self._gaps.due(self._exchange, self._grace_s)
            self._metrics.gap_ids_open.labels(source=self._source).set(
                self._gaps.open_ids(self._exchange)
            )
            if not due:
                self._gaps.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(self._grace_s, 0.05)):
                        await self._gaps.changed.wait()
                continue
            for symbol, first in due:
                await self._wait_for_ingest()
                await self.fill_page(symbol, first)

    async def _wait_for_ingest(self) -> None:
        await self._ingest.wait_connected()
        await self._ingest.wait_room(self._page_size)

    async def fill_page(self, symbol: str, first: int) -> int:
        """Fetch one page from `first` and deliver what was missing; return trades delivered."""
        epoch = self._gaps.tracker(self._exchange, symbol).tail_epoch
        try:
            page = await self._fetcher.fetch(symbol, first, self._page_size)
        except RestRateLimited as error:
            self._metrics.rest_requests.labels(
                source=self._source, outcome="banned" if error.status == 418 else "rate_limited"
            ).inc()
            log.warning("backfill of %s paused: %s", symbol, error)
            return 0
        except (BinanceAPIException, BinanceRequestException, RestPageError, OSError) as error:
            self._metrics.rest_requests.labels(source=self._source, outcome="error").inc()
            self._failures += 1
            delay = min(self._retry_max_s, 0.2 * 2 ** min(self._failures, 10))
            log.warning(
                "backfill of %s from id %d failed (%s); retry in %.1fs", symbol, first, error, delay
            )
            await asyncio.sleep(delay)
            return 0
        self._failures = 0
        self._metrics.rest_requests.labels(source=self._source, outcome="ok").inc()
        return self._apply_page(symbol, first, page, epoch)

    def _apply_page(
        self, symbol: str, first: int, page: market_pb2.SymbolTrades, epoch: int
    ) -> int:
        tracker = self._gaps.tracker(self._exchange, symbol)
        for_gap = any(gap.first <= first <= gap.last for gap in tracker.gaps)
        count = len(page.trade_ids)
        delivered = 0
        if count:
            fresh = self._gaps.deliver(page, outcome="backfilled")
            last = int(page.trade_ids[-1])
            # Ids in the covered range that the page does not hold are not market trades.
            tracker.resolve(first, last)
            if fresh is not None:
                delivered = len(fresh.trade_ids)
                # Only after resolving: a full buffer may drop this very page inside submit,
                # and the gaps it reopens for its ids must stay recorded to be fetched again.
                self._ingest.submit([fresh])
        elif for_gap:
            # Nothing at or after an id below the high mark: the exchange holds no such trades.
            log.warning("%s: REST has no trades from id %d; gap resolved", symbol, first)
            last = tracker.high if tracker.high is not None else first
            tracker.resolve(first, last)
        else:
            last = first - 1
        if tracker.tail_from is not None and not for_gap:
            high = tracker.high if tracker.high is not None else last
            if tracker.tail_epoch != epoch:
                # A connection (re)opened while this page was in flight: fetch once more after it.
                tracker.tail_from = max(tracker.tail_from, last + 1)
            elif count < self._page_size or high > last:
                tracker.tail_from = None  # caught up: the exchange or the live stream is ahead
            else:
                tracker.tail_from = last + 1
        self._metrics.gap_trades_filled.labels(source=self._source).inc(delivered)
        return delivered
