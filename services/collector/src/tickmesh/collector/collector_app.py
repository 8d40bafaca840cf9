"""The collector's moving parts wired together: sources, backfill, ingest, registry, health."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import redis.asyncio as redis
from purgatory import AsyncCircuitBreakerFactory

from tickmesh.collector.binance.backfill import Backfiller, BinanceRestFetcher, RestConfig
from tickmesh.collector.binance.connection import ConnectionConfig
from tickmesh.collector.binance.exchange_info import ExchangeInfoClient
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.binance.source import BinanceSource, SourceConfig
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.health import HealthReporter
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.collector.ingest_state import RedisSequenceStore, keep_rejected
from tickmesh.collector.resume_points import ResumePoints
from tickmesh.collector.settings import CollectorSettings
from tickmesh.collector.symbol_registry import RegisteredSymbol, SymbolRegistry
from tickmesh.collector.yahoo.session import RedirectingSession
from tickmesh.collector.yahoo.source import YahooSource
from tickmesh.core.exchanges import exchange_label
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import Shard
from tickmesh.core.tls import TlsMaterial
from tickmesh.v2 import market_pb2

log = logging.getLogger(__name__)

BINANCE = (market_pb2.EXCHANGE_BINANCE_SPOT, market_pb2.EXCHANGE_BINANCE_USDM)


def _yahoo_session_factory(settings: CollectorSettings) -> Callable[[], Any]:
    base = settings.collector_yahoo_base_url
    if base:
        return lambda: RedirectingSession(base)
    return lambda: None  # yfinance's own session


class Collector:
    """Everything the collector process runs besides its gRPC SymbolService."""

    def __init__(
        self,
        settings: CollectorSettings,
        metrics: CollectorMetrics,
        registry: SymbolRegistry,
        redis_client: redis.Redis,
        exchange_info: ExchangeInfoClient,
        tls: TlsMaterial | None = None,
    ) -> None:
        self.settings = settings
        self._registry = registry
        self._exchange_info = exchange_info
        # When exchangeInfo was last asked per venue, so an unreachable venue is not hammered.
        self._info_asked: dict[int, float] = {}
        self.shard = Shard(settings.collector_shard_index, settings.collector_shard_count)
        self.gaps = GapBook(metrics)
        self.ingest = IngestClient(
            IngestConfig(
                address=settings.ingest_address,
                stream_id=settings.stream_id,
                max_batch_trades=settings.collector_batch_trades,
                max_batch_delay_s=settings.collector_batch_delay_ms / 1000,
                max_buffered_trades=settings.collector_buffer_trades,
                max_in_flight_batches=settings.collector_in_flight_batches,
            ),
            metrics,
            RedisSequenceStore(redis_client),
            on_dropped=self._dropped,
            on_rejected=functools.partial(keep_rejected, redis_client),
            # The bar service admits this stream by the collector's certificate.
            channel_factory=functools.partial(open_channel, tls=tls),
        )
        breakers = AsyncCircuitBreakerFactory(
            default_threshold=settings.collector_breaker_threshold,
            default_ttl=settings.collector_breaker_ttl_seconds,
        )
        self.sources: dict[int, BinanceSource] = {}
        self._fetchers: list[BinanceRestFetcher] = []
        self.backfillers: list[Backfiller] = []
        aggregated = settings.collector_binance_stream_kind == "aggTrade"
        venues = (
            (
                market_pb2.EXCHANGE_BINANCE_SPOT,
                settings.collector_binance_spot_stream_url,
                settings.collector_binance_spot_api_url,
                settings.collector_binance_spot_weight_per_minute,
            ),
            (
                market_pb2.EXCHANGE_BINANCE_USDM,
                settings.collector_binance_usdm_stream_url,
                settings.collector_binance_usdm_api_url,
                settings.collector_binance_usdm_weight_per_minute,
            ),
        )
        for exchange, stream_url, api_url, weight in venues:
            connection = ConnectionConfig(
                stream_url=stream_url,
                max_streams=settings.collector_binance_max_streams,
                max_age_s=settings.collector_binance_max_age_seconds,
                ping_interval_s=settings.collector_binance_ping_interval_seconds,
                ping_timeout_s=settings.collector_binance_ping_interval_seconds,
                silence_s=settings.collector_binance_silence_seconds,
                flush_trades=settings.collector_batch_trades,
            )
            source = self.sources[exchange] = BinanceSource(
                SourceConfig(
                    exchange,
                    connection,
                    stream_kind=settings.collector_binance_stream_kind,
                    batch_delay_s=settings.collector_batch_delay_ms / 1000,
                ),
                self.gaps,
                self.ingest,
                metrics,
                breakers,
            )
            fetcher = BinanceRestFetcher(
                RestConfig(api_url, exchange, aggregated, weight),
                source.increments,
                source.on_rest_refused,
            )
            self._fetchers.append(fetcher)
            self.backfillers.append(
                Backfiller(
                    exchange,
                    fetcher,
                    self.gaps,
                    self.ingest,
                    metrics,
                    grace_s=settings.collector_backfill_grace_ms / 1000,
                )
            )
        self.yahoo = YahooSource(
            self.ingest,
            metrics,
            _yahoo_session_factory(settings),
            poll_s=settings.collector_yahoo_poll_seconds,
            requests_per_minute=settings.collector_yahoo_requests_per_minute,
        )
        probes = {exchange_label(ex): source.health for ex, source in self.sources.items()}
        self.health = HealthReporter(
            redis_client,
            {**probes, "yahoo": self.yahoo.health, "ingest": self._ingest_health},
            settings.collector_health_interval_seconds,
        )
        self.resume = ResumePoints(
            redis_client, settings.stream_id, self.gaps, self.ingest, metrics
        )
        self._tasks: list[asyncio.Task[None]] = []

    def _dropped(
        self, runs: list[market_pb2.SymbolTrades], bars: list[market_pb2.SourceBar]
    ) -> None:
        self.gaps.reopen_dropped(runs, bars)
        self.yahoo.on_dropped(bars)

    def _ingest_health(self) -> dict[str, Any]:
        ingest = self.ingest
        return {
            "state": "up" if ingest.connected else "connecting",
            "error": None
            if ingest.connected
            else f"not connected to the bar service at {ingest.config.address}",
            "stream_id": ingest.config.stream_id,
            "acked_sequence": ingest.acked_sequence,
            "unacked_batches": ingest.unacked_batches,
            "buffered_trades": ingest.buffered_trades,
            "dropped_trades": ingest.dropped_trades,
        }

    def apply_symbols(self, symbols: Iterable[RegisteredSymbol]) -> None:
        """Collect the active instruments of this shard (plus the configured Yahoo tickers)."""
        by_exchange: dict[int, set[str]] = {exchange: set() for exchange in BINANCE}
        increments: dict[int, dict[str, tuple[int | None, int | None]]] = {
            exchange: {} for exchange in BINANCE
        }
        yahoo = {
            ticker
            for ticker in self.settings.yahoo_tickers
            if self.shard.owns(InstrumentId(market_pb2.EXCHANGE_YAHOO, ticker))
        }
        for entry in symbols:
            if not entry.active or not self.shard.owns(entry.instrument):
                continue
            if entry.exchange in by_exchange:
                by_exchange[entry.exchange].add(entry.symbol)
                increments[entry.exchange][entry.symbol] = entry.increment_decimals
            elif entry.exchange == market_pb2.EXCHANGE_YAHOO:
                yahoo.add(entry.symbol)
        for exchange, wanted in by_exchange.items():
            self.sources[exchange].set_increments(increments[exchange])
            self.sources[exchange].set_symbols(wanted)
        self.yahoo.set_tickers(yahoo)

    async def _ask_increments(self, symbols: list[RegisteredSymbol]) -> list[RegisteredSymbol]:
        """Fill unknown tick/step sizes from exchangeInfo, each venue at most once per retry."""
        now = asyncio.get_running_loop().time()
        unknown: dict[int, list[str]] = {}
        for entry in symbols:
            wanted = entry.active and entry.exchange in BINANCE and not entry.price_increment
            if wanted and self.shard.owns(entry.instrument):
                unknown.setdefault(entry.exchange, []).append(entry.symbol)
        filled: dict[InstrumentId, RegisteredSymbol] = {}
        for exchange, names in unknown.items():
            asked = self._info_asked.get(exchange)
            if (
                asked is not None
                and now - asked < self.settings.collector_exchange_info_retry_seconds
            ):
                continue
            self._info_asked[exchange] = now
            for symbol, found in (await self._exchange_info.increments(exchange, names)).items():
                instrument = InstrumentId(exchange, symbol)
                filled[instrument] = await self._registry.set_increments(
                    instrument, found.price, found.quantity
                )
        return [filled.get(entry.instrument, entry) for entry in symbols]

    async def follow_registry(self) -> None:
        """Poll the `symbols` table and follow its changes until cancelled."""
        while True:
            try:
                self.apply_symbols(await self._ask_increments(await self._registry.list()))
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("cannot read the symbol registry: %s", error)
            await asyncio.sleep(self.settings.collector_registry_poll_seconds)

    async def register_default_watchlist(self) -> None:
        """On an empty registry, register the default watchlist so a first run shows the market."""
        watchlist = self.settings.default_watchlist
        if not watchlist or not await self._registry.is_empty():
            return
        added = await self._registry.add_default(watchlist)
        if added:
            log.info(
                "empty symbol registry: registered the default watchlist %s "
                "(set TICKMESH_COLLECTOR_DEFAULT_WATCHLIST to change it)",
                ", ".join(str(instrument) for instrument in watchlist),
            )

    async def start(self) -> None:
        """Start every part as a task."""
        await self.register_default_watchlist()
        symbols = await self._registry.list()
        await self.resume.restore(
            (entry.exchange, entry.symbol)
            for entry in symbols
            if entry.active and entry.exchange in BINANCE and self.shard.owns(entry.instrument)
        )
        self.apply_symbols(symbols)
        runners = [
            self.ingest.run(),
            self.resume.run(),
            self.follow_registry(),
            self.yahoo.run(),
            self.health.run(),
            *(source.run() for source in self.sources.values()),
            *(backfiller.run() for backfiller in self.backfillers),
        ]
        self._tasks = [asyncio.create_task(runner) for runner in runners]
        for task in self._tasks:
            task.add_done_callback(_stop_process_when_a_part_dies)

    async def stop(self, drain_s: float) -> None:
        """Stop the sources, give the ingest stream `drain_s` to be acknowledged, stop the rest."""
        ingest_task, *others = self._tasks
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await self.ingest.flush()
        ingest_task.cancel()
        await asyncio.gather(ingest_task, return_exceptions=True)
        for fetcher in self._fetchers:
            await fetcher.aclose()


def _stop_process_when_a_part_dies(task: asyncio.Task[None]) -> None:
    # Every part runs until cancelled; one that ends on its own would leave the collector up
    # but silently not collecting. Stop (drain) so the supervisor or Kubernetes restarts it.
    if task.cancelled() or task.exception() is None:
        return
    log.critical("collector part stopped: %r; stopping the process", task.exception())
    os.kill(os.getpid(), signal.SIGTERM)
