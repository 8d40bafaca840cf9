"""The symbol registry by instrument, in PostgreSQL: venues side by side, increments, watchlist."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from grpc import aio

from tickmesh.collector.binance.exchange_info import ExchangeInfoClient, parse_exchange_info
from tickmesh.collector.settings import CollectorSettings
from tickmesh.collector.simulator import (
    ExchangeSimulator,
    SimulatorConfig,
    SourceSpec,
    WholeMarket,
)
from tickmesh.collector.symbol_registry import SymbolRegistry
from tickmesh.collector.symbol_service import SymbolServicer
from tickmesh.core.db.migrations import migrate
from tickmesh.core.fixtures import fixtures_root
from tickmesh.core.grpc_server import GrpcServer, ServiceRegistration
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.settings import SettingsError, load_settings
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
USDM_CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt"
SPOT_CAPTURE = "binance_spot/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    connection = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    created = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    assert created is not None
    yield created
    await created.close()


async def test_registry_spot_and_usdm_btcusdt_side_by_side(pool: asyncpg.Pool) -> None:
    registry = SymbolRegistry(pool)
    await registry.add("BTCUSDT", SPOT, "crypto")
    await registry.add("BTCUSDT", USDM, "crypto")
    await registry.add("AAPL", market_pb2.EXCHANGE_YAHOO)
    listed = await registry.list()
    assert [str(entry.instrument) for entry in listed] == [
        "binance_spot:BTCUSDT",
        "binance_usdm:BTCUSDT",
        "yahoo:AAPL",
    ]
    assert listed[2].asset_type == "stock"
    # Deactivating the USD-M perpetual leaves the spot instrument collecting.
    await registry.deactivate(InstrumentId(USDM, "BTCUSDT"))
    assert [str(entry.instrument) for entry in await registry.list()] == [
        "binance_spot:BTCUSDT",
        "yahoo:AAPL",
    ]
    # Re-adding on one venue reactivates only that one.
    await registry.add("BTCUSDT", USDM, "crypto")
    assert len(await registry.list()) == 3
    updated = await registry.set_increments(InstrumentId(USDM, "BTCUSDT"), "0.10", "0.001")
    assert (updated.price_increment, updated.quantity_increment) == ("0.1", "0.001")
    assert updated.increment_decimals == (1, 3)
    spot = next(e for e in await registry.list() if e.exchange == SPOT)
    assert (spot.price_increment, spot.quantity_increment) == ("", "")
    assert spot.increment_decimals == (None, None)


async def test_default_watchlist_only_on_an_empty_registry(pool: asyncpg.Pool) -> None:
    registry = SymbolRegistry(pool)
    watchlist = [InstrumentId.parse("binance_usdm:ETHUSDT"), InstrumentId.parse("yahoo:SPY")]
    assert await registry.is_empty()
    assert await registry.add_default(watchlist) == 2
    assert [str(e.instrument) for e in await registry.list()] == [
        "binance_usdm:ETHUSDT",
        "yahoo:SPY",
    ]
    # A registry that ever had an entry (even deactivated) is the user's: left alone.
    await registry.deactivate(watchlist[1])
    assert await registry.add_default([InstrumentId.parse("binance_spot:BTCUSDT")]) == 0


async def test_symbol_service_fills_increments_from_simulated_exchange_info(
    pool: asyncpg.Pool,
) -> None:
    fixtures_dir = fixtures_root()
    config = SimulatorConfig(
        sources=[SourceSpec(fixtures_dir / USDM_CAPTURE), SourceSpec(fixtures_dir / SPOT_CAPTURE)],
        paused=True,
    )
    async with ExchangeSimulator(config) as simulator:
        info = ExchangeInfoClient({SPOT: simulator.api_url, USDM: simulator.futures_api_url})
        servicer = SymbolServicer(SymbolRegistry(pool), info)
        registration = ServiceRegistration(
            symbol_service_pb2.DESCRIPTOR.services_by_name["SymbolService"].full_name,
            symbol_service_pb2_grpc.add_SymbolServiceServicer_to_server,
            servicer,
        )
        server = GrpcServer("127.0.0.1:0", [registration], CoreMetrics(), drain_seconds=1)
        await server.start()
        try:
            async with aio.insecure_channel(server.address) as channel:
                stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
                spot = await stub.AddSymbol(
                    symbol_service_pb2.AddSymbolRequest(symbol="BTCUSDT", exchange=SPOT)
                )
                usdm = await stub.AddSymbol(
                    symbol_service_pb2.AddSymbolRequest(symbol="BTCUSDT", exchange=USDM)
                )
                listed = await stub.ListSymbols(symbol_service_pb2.ListSymbolsRequest())
                with pytest.raises(aio.AioRpcError) as refused:
                    await stub.DeactivateSymbol(symbol_service_pb2.DeactivateSymbolRequest())
        finally:
            await server.stop()
    # The captures' finest decimals: spot 0.01 / 0.00001, USD-M 0.1 / 0.001 (Binance's own).
    assert (spot.symbol.price_increment, spot.symbol.quantity_increment) == ("0.01", "0.00001")
    assert (usdm.symbol.price_increment, usdm.symbol.quantity_increment) == ("0.1", "0.001")
    assert [(s.exchange, s.symbol) for s in listed.symbols] == [
        (SPOT, "BTCUSDT"),
        (USDM, "BTCUSDT"),
    ]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("instrument:")


async def test_exchange_info_of_a_whole_spot_market_is_asked_in_parts() -> None:
    # 1,200 spot symbols: as one `symbols` list the URL is about 21 KB, past the 8 KB request
    # line servers accept (the simulator's aiohttp answers 400, as Binance's front does).
    market = WholeMarket(2_400, trades=0)
    async with ExchangeSimulator(SimulatorConfig(whole_market=market, paused=True)) as simulator:
        info = ExchangeInfoClient({SPOT: simulator.api_url, USDM: simulator.futures_api_url})
        spot_names = [f"W{i:04d}USDT" for i in range(0, 2_400, 2)]
        spot = await info.increments(SPOT, [*spot_names, "NOTLISTED"])
        usdm = await info.increments(USDM, ["W0001USDT", "W2399USDT"])
    assert sorted(spot) == sorted(spot_names)
    assert sorted(usdm) == ["W0001USDT", "W2399USDT"]


async def test_exchange_info_unreachable_venue_leaves_increments_unknown() -> None:
    info = ExchangeInfoClient({SPOT: "http://127.0.0.1:9/api"}, timeout_s=1.0)
    assert await info.increments(SPOT, ["BTCUSDT"]) == {}
    assert await info.increments(market_pb2.EXCHANGE_YAHOO, ["AAPL"]) == {}


def test_exchange_info_parses_binance_filters_exactly() -> None:
    body = (
        b'{"symbols":[{"symbol":"BTCUSDT","filters":[{"filterType":"PRICE_FILTER",'
        b'"minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},'
        b'{"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000",'
        b'"stepSize":"0.00001000"}]},{"symbol":"NOFILTERS","filters":[]}]}'
    )
    found = parse_exchange_info(body)
    assert list(found) == ["BTCUSDT"]
    assert (found["BTCUSDT"].price, found["BTCUSDT"].quantity) == ("0.01", "0.00001")


def test_malformed_default_watchlist_stops_with_exit_2_naming_the_variable() -> None:
    environment = dict(
        os.environ, TICKMESH_COLLECTOR_DEFAULT_WATCHLIST="binance_spot:BTCUSDT,nasdaq:AAPL"
    )
    code = (
        "from tickmesh.collector.settings import CollectorSettings\n"
        "from tickmesh.core.settings import load_settings_or_exit\n"
        "load_settings_or_exit(CollectorSettings)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "TICKMESH_COLLECTOR_DEFAULT_WATCHLIST" in done.stderr
    assert "nasdaq:AAPL" in done.stderr


def test_default_watchlist_setting_default_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    # The root conftest empties the watchlist for the other tests; this one reads the default.
    monkeypatch.delenv("TICKMESH_COLLECTOR_DEFAULT_WATCHLIST", raising=False)
    default = CollectorSettings()
    assert [str(i) for i in default.default_watchlist] == [
        "binance_spot:BTCUSDT",
        "binance_spot:ETHUSDT",
        "binance_usdm:BTCUSDT",
        "binance_usdm:ETHUSDT",
        "yahoo:SPY",
        "yahoo:AAPL",
    ]
    assert CollectorSettings(collector_default_watchlist="").default_watchlist == []


def test_malformed_yahoo_ticker_setting_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TICKMESH_COLLECTOR_YAHOO_TICKERS", "SPY,BRK B")
    with pytest.raises(SettingsError, match=r"^TICKMESH_COLLECTOR_YAHOO_TICKERS: symbol 'BRK B'"):
        load_settings(CollectorSettings)
