"""The collector's parts against the exchange simulator and a real bar service process.

The harness wires the same objects the collector process wires (gap book, ingest client,
Binance sources, REST backfill), with the simulator's URLs and short timings, so a test
can inject faults on both sides and watch every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from prometheus_client import CollectorRegistry
from purgatory import AsyncCircuitBreakerFactory

from tickmesh.collector.binance.backfill import Backfiller, BinanceRestFetcher, RestConfig
from tickmesh.collector.binance.connection import ConnectionConfig
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.binance.source import BinanceSource, SourceConfig
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.collector.simulator import ExchangeSimulator
from tickmesh.v2 import market_pb2

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
NS_PER_MS = 1_000_000
MINUTE_NS = 60_000_000_000


@dataclass
class MinuteBar:
    """A 1m bar computed from a capture's market trades (the reference), exact decimals."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    count: int
    # Sum of quantities whose buyer was the taker (Binance m=false); None where unknown.
    taker_buy_volume: Decimal | None = None


def capture_minutes(path: Path) -> tuple[dict[int, MinuteBar], int]:
    """Reference 1m bars by open time (ns) of a capture's market trades, and its last trade id."""
    trades: dict[int, list[tuple[int, int, Decimal, Decimal, bool]]] = defaultdict(list)
    last_id = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            data = json.loads(line.partition(" ")[2])["data"]
            last_id = max(last_id, data["t"])
            if data.get("X", "MARKET") != "MARKET":
                continue
            minute = data["T"] * NS_PER_MS // MINUTE_NS * MINUTE_NS
            trade = (data["T"], data["t"], Decimal(data["p"]), Decimal(data["q"]), not data["m"])
            trades[minute].append(trade)
    bars = {}
    for minute, rows in trades.items():
        rows.sort()
        prices = [row[2] for row in rows]
        bars[minute] = MinuteBar(
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
            sum((r[3] for r in rows), Decimal(0)),
            len(rows),
            sum((r[3] for r in rows if r[4]), Decimal(0)),
        )
    return bars, last_id


class CollectorHarness:
    """Spot and USD-M sources, backfill and an ingest client, as the collector wires them."""

    def __init__(
        self,
        sim: ExchangeSimulator,
        bars_address: str,
        stream_id: str,
        symbols: dict[market_pb2.Exchange.ValueType, list[str]],
        buffer_trades: int = 1_000_000,
        max_age_s: float = 3600.0,
    ) -> None:
        self.metrics = CollectorMetrics(CollectorRegistry())
        self.gaps = GapBook(self.metrics)
        self.ingest = IngestClient(
            IngestConfig(
                bars_address,
                stream_id,
                max_buffered_trades=buffer_trades,
                reconnect_initial_s=0.05,
                reconnect_max_s=0.5,
            ),
            self.metrics,
            on_dropped=self.gaps.reopen_dropped,
        )
        breakers = AsyncCircuitBreakerFactory(default_threshold=20, default_ttl=1)
        urls = {
            SPOT: (sim.ws_url, sim.api_url, 6000),
            USDM: (sim.futures_ws_url, sim.futures_api_url, 2400),
        }
        self.sources: dict[int, BinanceSource] = {}
        self.fetchers: list[BinanceRestFetcher] = []
        self.backfillers: list[Backfiller] = []
        for exchange, names in symbols.items():
            stream_url, api_url, weight = urls[exchange]
            connection = ConnectionConfig(
                stream_url=stream_url,
                max_age_s=max_age_s,
                overlap_s=0.1,
                ping_interval_s=2.0,
                ping_timeout_s=2.0,
                silence_s=10.0,
            )
            source = BinanceSource(
                SourceConfig(exchange, connection, reconnect_initial_s=0.05, reconnect_max_s=0.5),
                self.gaps,
                self.ingest,
                self.metrics,
                breakers,
            )
            source.set_symbols(names)
            self.sources[exchange] = source
            fetcher = BinanceRestFetcher(RestConfig(api_url, exchange, weight_per_minute=weight))
            self.fetchers.append(fetcher)
            self.backfillers.append(
                Backfiller(exchange, fetcher, self.gaps, self.ingest, self.metrics, grace_s=0.3)
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> CollectorHarness:
        runners = [
            self.ingest.run(),
            *(source.run() for source in self.sources.values()),
            *(backfiller.run() for backfiller in self.backfillers),
        ]
        self._tasks = [asyncio.create_task(runner) for runner in runners]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fetcher in self.fetchers:
            await fetcher.aclose()

    def complete(self, last_ids: dict[tuple[int, str], int]) -> bool:
        """Every symbol delivered through its last id with nothing missing or unacknowledged."""
        for key, last_id in last_ids.items():
            tracker = self.gaps.trackers.get(key)
            if tracker is None or tracker.high != last_id:
                return False
            if tracker.gaps or tracker.tail_from is not None:
                return False
        return self.ingest.buffered_trades == 0

    async def wait_complete(self, last_ids: dict[tuple[int, str], int], within_s: float) -> None:
        """Wait until `complete`; TimeoutError naming what is missing otherwise."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while not self.complete(last_ids):  # noqa: ASYNC110 - state spans many objects
                    await asyncio.sleep(0.05)
                return
        state = {
            f"{key}": (t.high, [(g.first, g.last) for g in t.gaps], t.tail_from)
            for key, t in self.gaps.trackers.items()
        }
        raise TimeoutError(f"not complete: {state}, buffered {self.ingest.buffered_trades}")

    async def wait_subscribed(self, sim: ExchangeSimulator, streams: int) -> None:
        """Wait until the simulator routes `streams` subscriptions to open connections."""
        async with asyncio.timeout(10):
            while sum(len(c.subscriptions) for c in sim.hub.connections) < streams:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
