"""Poll Yahoo Finance 1m bars through yfinance and publish each completed bar once.

Requests are paced by a token bucket (aiolimiter) shared by every ticker. yfinance is
synchronous, so each request runs in a worker thread. A bar is complete once its minute
has ended by the wall clock; each ticker remembers the open time of the last bar it
published, so a bar is sent once (unless the ingest buffer dropped it unsent, which
rewinds the ticker). Market hours come from the answer's current trading period and
set the health state and the poll pace (slower while the market is closed). Errors
and empty answers (weekends) are counted, logged and polled again later.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import yfinance as yf
from aiolimiter import AsyncLimiter

from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient
from tickmesh.core.decimals import format_decimal, from_decimal
from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)

NS_PER_MINUTE = 60_000_000_000
SOURCE = "yahoo"
SessionFactory = Callable[[], Any]


# Yahoo's chart JSON carries prices as floats that went through float32 on Yahoo's side
# (226.7899932861328 for a trade at 226.79), so the float is not the exchange's value.
# The chart meta's `priceHint` says how many decimals the instrument is quoted in (2 for
# US stocks, 4 for sub-dollar ones): rounding each price to it, half-even, gives back the
# exact quoted decimal. Volumes are share counts, so they are rounded to integers.
DEFAULT_PRICE_HINT = 2

OhlcvText = tuple[int, str, str, str, str, str]


def price_text(value: float, price_hint: int) -> str:
    """A Yahoo price as the exact decimal it stands for: rounded to `price_hint` decimals."""
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-price_hint), rounding=ROUND_HALF_EVEN)
    return format_decimal(*from_decimal(rounded, "price"))


def volume_text(value: float) -> str:
    """A Yahoo volume as a whole number of shares (0 for Yahoo's missing volume)."""
    return "0" if math.isnan(value) else str(round(value))


@dataclass(frozen=True, slots=True)
class MinuteBars:
    """One answer: the bars (open time in ns, exact OHLCV strings) and whether it is open."""

    bars: list[OhlcvText]
    market_open: bool | None


def _price_hint(handle: Any) -> int:
    try:
        hint = int(handle.history_metadata.get("priceHint", DEFAULT_PRICE_HINT))
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_PRICE_HINT
    return hint if 0 <= hint <= 8 else DEFAULT_PRICE_HINT


def fetch_minute_bars(ticker: str, session: Any, now_ns: int) -> MinuteBars:
    """Ask yfinance for today's 1m bars of `ticker` (blocking; run it in a thread)."""
    handle = yf.Ticker(ticker, session=session)
    frame = handle.history(period="1d", interval="1m", prepost=False, auto_adjust=False)
    bars: list[OhlcvText] = []
    if frame is not None and not frame.empty:
        hint = _price_hint(handle)
        columns = [frame[name].tolist() for name in ("Open", "High", "Low", "Close", "Volume")]
        for stamp, o, h, low, c, v in zip(frame.index, *columns, strict=True):
            if any(math.isnan(x) for x in (o, h, low, c)):
                continue  # Yahoo's all-null rows (a minute without quotes)
            prices = [price_text(x, hint) for x in (o, h, low, c)]
            bars.append((int(stamp.value), *prices, volume_text(v)))  # type: ignore[arg-type]
    return MinuteBars(bars, _market_open(handle, now_ns))


def _market_open(handle: Any, now_ns: int) -> bool | None:
    try:
        regular = handle.history_metadata["currentTradingPeriod"]["regular"]
        return bool(regular["start"].value <= now_ns < regular["end"].value)
    except (KeyError, TypeError, AttributeError):
        return None


@dataclass(slots=True)
class _Ticker:
    symbol: str
    last_sent_ns: int = 0
    market_open: bool | None = None
    next_poll: float = 0.0
    errors: int = 0
    last_error: str | None = None
    answered: bool = False


class YahooSource:
    """Polls the configured tickers and publishes completed 1m bars as SourceBar."""

    def __init__(
        self,
        ingest: IngestClient,
        metrics: CollectorMetrics,
        session_factory: SessionFactory,
        poll_s: float = 30.0,
        requests_per_minute: float = 30.0,
        closed_poll_s: float = 300.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._ingest = ingest
        self._metrics = metrics
        self._session_factory = session_factory
        self._poll_s = poll_s
        self._closed_poll_s = max(closed_poll_s, poll_s)
        self._limiter = AsyncLimiter(requests_per_minute, 60.0)
        self._clock_ns = clock_ns
        self._tickers: dict[str, _Ticker] = {}
        self._wake = asyncio.Event()
        self._unreachable_logged = False
        self.polls = 0

    def set_tickers(self, tickers: Iterable[str]) -> None:
        """Follow the configured and registered tickers."""
        wanted = set(tickers)
        for symbol in list(self._tickers):
            if symbol not in wanted:
                del self._tickers[symbol]
        for symbol in wanted:
            self._tickers.setdefault(symbol, _Ticker(symbol))
        self._wake.set()

    def on_dropped(self, bars: list[market_pb2.SourceBar]) -> None:
        """Bars the ingest buffer dropped unsent: rewind their tickers to send them again."""
        for bar in bars:
            state = self._tickers.get(bar.symbol)
            if state is not None:
                state.last_sent_ns = min(state.last_sent_ns, bar.open_time_ns - 1)

    async def run(self) -> None:
        """Poll until cancelled."""
        session = self._session_factory()
        while True:
            now = time.monotonic()
            due = [t for t in self._tickers.values() if t.next_poll <= now]
            for state in due:
                await self._limiter.acquire()
                await self.poll(state.symbol, session)
            upcoming = [t.next_poll for t in self._tickers.values()]
            wait = (min(upcoming) - time.monotonic()) if upcoming else self._poll_s
            self._wake.clear()
            try:
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def poll(self, symbol: str, session: Any) -> int:
        """Fetch one ticker and publish its new completed bars; return how many."""
        state = self._tickers.setdefault(symbol, _Ticker(symbol))
        now_ns = self._clock_ns()
        self.polls += 1
        try:
            answer = await asyncio.to_thread(fetch_minute_bars, symbol, session, now_ns)
        except Exception as error:  # yfinance raises many kinds; every one is counted and retried
            state.errors += 1
            state.last_error = f"{type(error).__name__}: {error}"[:300]
            self._metrics.rest_requests.labels(source=SOURCE, outcome="error").inc()
            if not self._unreachable_logged and not any(t.answered for t in self._tickers.values()):
                self._unreachable_logged = True
                log.warning(
                    "Yahoo Finance cannot be reached (%s: %s); retrying in the background. "
                    "Without internet access, run `make demo` for the offline simulator",
                    symbol,
                    error,
                )
            else:
                log.warning("yahoo %s poll failed: %s", symbol, error)
            state.next_poll = time.monotonic() + min(
                self._closed_poll_s, self._poll_s * 2**state.errors
            )
            return 0
        state.errors = 0
        state.last_error = None
        state.answered = True
        self._metrics.rest_requests.labels(source=SOURCE, outcome="ok").inc()
        state.market_open = answer.market_open
        pace = self._closed_poll_s if answer.market_open is False else self._poll_s
        state.next_poll = time.monotonic() + pace
        received = time.time_ns()
        fresh = [
            market_pb2.SourceBar(
                exchange=market_pb2.EXCHANGE_YAHOO,
                symbol=symbol,
                timeframe=market_pb2.TIMEFRAME_1M,
                open_time_ns=open_ns,
                open=o,
                high=h,
                low=low,
                close=c,
                volume=v,
                receive_time_ns=received,
            )
            for open_ns, o, h, low, c, v in answer.bars
            if open_ns > state.last_sent_ns and open_ns + NS_PER_MINUTE <= now_ns
        ]
        if fresh:
            state.last_sent_ns = max(bar.open_time_ns for bar in fresh)
            self._ingest.submit(bars=fresh)
            self._metrics.source_bars.labels(source=SOURCE).inc(len(fresh))
        return len(fresh)

    def health(self) -> dict[str, Any]:
        """State for `system:health`: tickers, market hours, failing tickers."""
        tickers = list(self._tickers.values())
        failing = sorted(t.symbol for t in tickers if t.errors)
        open_now = [t.symbol for t in tickers if t.market_open]
        errors = [t.last_error for t in tickers if t.last_error is not None]
        if not tickers:
            state = "idle"
        elif failing and not any(t.answered for t in tickers):
            state = "unreachable"
        elif failing:
            state = "degraded"
        elif not any(t.answered for t in tickers):
            state = "connecting"
        else:
            state = "up"
        return {
            "state": state,
            "error": errors[0] if errors else None,
            "tickers": len(self._tickers),
            "market_open": sorted(open_now),
            "failing": failing,
            "polls": self.polls,
        }
