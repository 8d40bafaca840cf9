"""The demo's instruments: from each replayed file's own venue, or the random walk's venues.

A USD-M capture registers USD-M instruments and a spot capture spot ones (the simulator
detects the venue per file), so `tickmesh demo <USD-M capture>` gives USD-M bars with no
other step. They are registered through the collector's SymbolService once it is up.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from tickmesh.collector.simulator import Market, SourceSpec, WholeMarket, file_instruments
from tickmesh.collector.simulator.whole_market import whole_market_instruments
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.tls import TlsMaterial
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

log = logging.getLogger(__name__)

EXCHANGE_OF_MARKET = {
    Market.SPOT: market_pb2.EXCHANGE_BINANCE_SPOT,
    Market.USDM: market_pb2.EXCHANGE_BINANCE_USDM,
}


def demo_instruments(
    files: Sequence[Path],
    symbols: Sequence[str],
    markets: Sequence[Market],
    whole_market: int | None = None,
) -> list[InstrumentId]:
    """Each file's instruments on its own venue; with no file, `symbols` on every market.

    `whole_market` N: the N instruments of the simulator's whole market, each on its venue.
    """
    if whole_market is not None and not files:
        listed = whole_market_instruments(WholeMarket(whole_market))
        return sorted(
            InstrumentId(EXCHANGE_OF_MARKET[market], name)
            for market, names in listed.items()
            for name in names
        )
    found: set[InstrumentId] = set()
    for path in files:
        market, names = file_instruments(SourceSpec(path))
        found.update(InstrumentId(EXCHANGE_OF_MARKET[market], name) for name in names)
    if not files:
        found.update(
            InstrumentId(EXCHANGE_OF_MARKET[market], symbol)
            for market in markets
            for symbol in symbols
        )
    return sorted(found)


async def register_instruments(
    instruments: Sequence[InstrumentId],
    within_seconds: float = 120.0,
    resume_url: str | None = None,
    tls: TlsMaterial | None = None,
) -> None:
    """Add each instrument on its venue; then resume a paused simulator once they are subscribed.

    `tls` is the certificate the collector's SymbolService admits (the gateway's).
    """
    address = os.environ.get("TICKMESH_COLLECTOR_ADDRESS", "127.0.0.1:50051")
    async with open_channel(address, tls=tls) as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        for instrument in instruments:
            await stub.AddSymbol(
                symbol_service_pb2.AddSymbolRequest(
                    symbol=instrument.symbol,
                    exchange=market_pb2.Exchange.ValueType(instrument.exchange),
                    asset_type="crypto",
                ),
                wait_for_ready=True,
                timeout=within_seconds,
            )
    log.info("registered %s", ", ".join(str(instrument) for instrument in instruments))
    if resume_url is not None:
        await _resume_when_subscribed(resume_url, instruments, within_seconds)


def _stream(instrument: InstrumentId) -> str:
    market = Market.USDM if instrument.exchange == market_pb2.EXCHANGE_BINANCE_USDM else Market.SPOT
    return f"{market.value}:{instrument.symbol.lower()}@trade"


async def _resume_when_subscribed(
    base_url: str, instruments: Sequence[InstrumentId], within_seconds: float
) -> None:
    """Resume the simulator's replay once the collector subscribed every instrument's stream."""
    wanted = {_stream(instrument) for instrument in instruments}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.timeout(within_seconds):
        while True:
            try:
                async with session.get(f"{base_url}/sim/status") as response:
                    status = await response.json()
            except aiohttp.ClientError:
                status = {"subscriptions": []}  # the simulator is still starting
            # Streams may be @trade or @aggTrade: a symbol counts once either is subscribed.
            subscribed = {s.replace("@aggTrade", "@trade") for s in status["subscriptions"]}
            if wanted <= subscribed:
                break
            await asyncio.sleep(0.2)
        async with session.post(f"{base_url}/sim/resume") as response:
            response.raise_for_status()
    log.info("replay started: the collector follows %d instrument(s)", len(instruments))
