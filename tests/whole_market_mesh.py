"""The whole-market scenario's mesh: the four services on the simulator's whole market.

Shared by the short correctness test (tests/test_whole_market.py) and the long benchmark
(bench/bench_whole_market.py): the processes are chaos_mesh's, with the gateway's WebSocket
limits raised for thousands of clients of one address and one user.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import asyncpg

from tickmesh.collector.simulator import ExchangeSimulator, Market
from tickmesh.core.instruments import InstrumentId
from tickmesh.mesh.demo_symbols import EXCHANGE_OF_MARKET, demo_instruments
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

from .chaos_mesh import Mesh, build_mesh
from .tls_helpers import TestPki

MINUTE_MS = 60_000
# AddSymbol calls in flight at once while registering thousands of instruments.
REGISTER_CONCURRENCY = 32


def build_market_mesh(
    common: dict[str, str],
    sim: ExchangeSimulator,
    clients: int,
    pki: TestPki | None = None,
    quick_timings: bool = True,
    bars_settings: dict[str, str] | None = None,
) -> Mesh:
    """The four processes (not started), the gateway admitting `clients` sockets of one user.

    `quick_timings` and `bars_settings` as in chaos_mesh.build_mesh: quick timings on for the
    test, off for the benchmark.
    """
    limits = {
        # The whole market is the simulator's: no internet watchlist on top.
        "TICKMESH_COLLECTOR_DEFAULT_WATCHLIST": "",
        "TICKMESH_GATEWAY_WS_PREAUTH_PER_IP": str(2 * clients + 100),
        "TICKMESH_GATEWAY_WS_CONNECTIONS_PER_USER": str(2 * clients + 100),
        "TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    return build_mesh(common | limits, sim, pki, quick_timings, bars_settings)


def market_instruments(sim: ExchangeSimulator) -> list[InstrumentId]:
    """The simulator's whole market as instruments, each on its venue."""
    spec = sim.config.whole_market
    assert spec is not None, "the simulator plays no whole market"
    return demo_instruments([], [], (Market.SPOT, Market.USDM), spec.instruments)


async def register_market(mesh: Mesh, instruments: Sequence[InstrumentId]) -> None:
    """Add every instrument through the collector's SymbolService (the gateway's right)."""
    gate = asyncio.Semaphore(REGISTER_CONCURRENCY)
    async with mesh.collector.channel("gateway") as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)

        async def add(instrument: InstrumentId) -> None:
            async with gate:
                await stub.AddSymbol(
                    symbol_service_pb2.AddSymbolRequest(
                        symbol=instrument.symbol,
                        exchange=market_pb2.Exchange.ValueType(instrument.exchange),
                        asset_type="crypto",
                    ),
                    timeout=60,
                )

        await asyncio.gather(*(add(instrument) for instrument in instruments))


async def wait_market_subscribed(
    sim: ExchangeSimulator, instruments: Sequence[InstrumentId], within_s: float = 120.0
) -> None:
    """Wait until the collector subscribed to every instrument's trade stream."""
    wanted = {
        (Market.SPOT if i.exchange == market_pb2.EXCHANGE_BINANCE_SPOT else Market.USDM, i.symbol)
        for i in instruments
    }
    async with asyncio.timeout(within_s):
        while True:
            subscribed = {
                (connection.market, stream.partition("@")[0].upper())
                for connection in sim.hub.connections
                for stream in connection.subscriptions
            }
            if wanted <= subscribed:
                return
            await asyncio.sleep(0.2)


def sent_trades_per_minute(sim: ExchangeSimulator) -> dict[tuple[str, str, int], int]:
    """Trades the simulator released per (venue, symbol, minute open ms), from its ledger."""
    counts: Counter[tuple[str, str, int]] = Counter()
    for market in Market:
        venue = InstrumentId(EXCHANGE_OF_MARKET[market], "X").venue
        for symbol in sim.ledger.symbols(market):
            ledger = sim.ledger.get(market, symbol)
            assert ledger is not None
            for trade in ledger.trades:
                counts[(venue, symbol, trade.time_ms // MINUTE_MS * MINUTE_MS)] += 1
    return dict(counts)


async def stored_trades_per_minute(database_url: str) -> dict[tuple[str, str, int], int]:
    """The trade count of every stored 1m bar with trades, by (venue, symbol, minute open ms)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT exchange, symbol, (extract(epoch FROM time) * 1000)::bigint AS open_ms,"
            " trade_count FROM candles JOIN instruments ON instruments.id = instrument_id"
            " WHERE timeframe = '1m' AND trade_count > 0"
        )
    finally:
        await conn.close()
    return {(r["exchange"], r["symbol"], int(r["open_ms"])): int(r["trade_count"]) for r in rows}


async def doubled_bars(database_url: str) -> list[tuple[str, str, str, int]]:
    """Bars stored more than once for one (venue, symbol, timeframe, open time): none expected."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT exchange, symbol, timeframe, count(*) AS n FROM candles"
            " JOIN instruments ON instruments.id = instrument_id"
            " GROUP BY exchange, symbol, timeframe, time HAVING count(*) > 1"
        )
    finally:
        await conn.close()
    return [(r["exchange"], r["symbol"], r["timeframe"], int(r["n"])) for r in rows]
