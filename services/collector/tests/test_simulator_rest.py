"""The simulator's REST API: paging by id, klines, weights, 429/418, python-binance."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from binance import AsyncClient

from tickmesh.collector.binance import parse_rest_historical_trades
from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig, SourceSpec
from tickmesh.v2 import market_pb2

from .exact_values import decimals, prices, quantities

USDM_2023 = "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"
KLINES_2023 = "binance_futures_um/BTCUSDT-1m-2023-04-04_2350_to_2023-04-05_0010.csv"
SPOT_2024 = "binance_spot/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"


@pytest.fixture(scope="module")
async def replayed(fixtures_dir: Path) -> AsyncIterator[ExchangeSimulator]:
    """A simulator that has replayed the 2023 USD-M and the 2024 spot captures."""
    config = SimulatorConfig(
        sources=[SourceSpec(fixtures_dir / USDM_2023), SourceSpec(fixtures_dir / SPOT_2024)],
        speed=None,
    )
    async with ExchangeSimulator(config) as sim:
        await sim.wait_replay_done()
        yield sim


async def _get(url: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, dict(response.headers), json.loads(await response.text())


def _client_class(sim: ExchangeSimulator) -> Any:
    # python-binance has no URL argument: a subclass overrides its class attributes.
    return type(
        "SimulatedBinanceClient",
        (AsyncClient,),
        {"API_URL": sim.api_url, "FUTURES_URL": sim.futures_api_url},
    )


async def test_simulator_historical_trades_pages_exact_ids(replayed: ExchangeSimulator) -> None:
    base = replayed.api_url + "/v3/historicalTrades?symbol=BTCUSDT"
    collected: list[int] = []
    from_id = 3735683259
    while from_id <= 3735686000:
        status, headers, rows = await _get(f"{base}&fromId={from_id}&limit=1000")
        assert status == 200
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 25
        ids = [row["id"] for row in rows]
        assert ids == list(range(from_id, from_id + 1000))
        collected += ids
        from_id = ids[-1] + 1
    assert collected == list(range(3735683259, 3735686259))
    status, _, rows = await _get(f"{base}&fromId=3735703160&limit=10")
    assert [row["id"] for row in rows] == [3735703160, 3735703161, 3735703162]
    status, _, error = await _get(f"{base}&limit=1001")
    assert status == 400
    assert error["code"] == -1130


async def test_simulator_historical_trades_parse_into_symbol_trades(
    replayed: ExchangeSimulator,
) -> None:
    url = replayed.api_url + "/v3/historicalTrades?symbol=BTCUSDT&fromId=3735683259&limit=2"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.read()
    run = parse_rest_historical_trades(body, market_pb2.EXCHANGE_BINANCE_SPOT, "BTCUSDT").to_proto()
    assert list(run.trade_ids) == [3735683259, 3735683260]
    assert prices(run) == decimals("61837.63", "61837.63")
    assert quantities(run) == decimals("0.02", "0.048")


async def test_simulator_futures_history_skips_insurance_fund(replayed: ExchangeSimulator) -> None:
    url = replayed.futures_api_url + "/v1/historicalTrades?symbol=BTCUSDT&fromId=3535191079&limit=3"
    status, _, rows = await _get(url)
    assert status == 200
    # Binance's USD-M historicalTrades returns market trades only.
    assert [row["id"] for row in rows] == [3535191079, 3535191081, 3535191082]


async def test_simulator_klines_equal_binance_klines(
    replayed: ExchangeSimulator, fixtures_dir: Path
) -> None:
    with (fixtures_dir / KLINES_2023).open() as handle:
        expected = {int(row[0]): row for row in list(csv.reader(handle))[1:]}
    start = 1680652740000  # 23:59, the first full minute of the capture
    url = (
        f"{replayed.futures_api_url}/v1/klines?symbol=BTCUSDT&interval=1m&startTime={start}&limit=7"
    )
    status, _, rows = await _get(url)
    assert status == 200
    assert len(rows) == 7
    for row in rows:
        want = expected[row[0]]
        assert [str(value) for value in row] == want


async def test_simulator_python_binance_client_calls_endpoints(
    replayed: ExchangeSimulator,
) -> None:
    client = await _client_class(replayed).create()
    try:
        spot = await client.get_historical_trades(symbol="BTCUSDT", fromId=3735683259, limit=5)
        assert [row["id"] for row in spot] == list(range(3735683259, 3735683264))
        futures = await client.futures_historical_trades(
            symbol="BTCUSDT", fromId=3535186032, limit=3
        )
        assert [row["id"] for row in futures] == [3535186032, 3535186033, 3535186034]
        klines = await client.get_klines(symbol="BTCUSDT", interval="1m", limit=3)
        assert len(klines) == 3
        assert all(len(row) == 12 for row in klines)
        assert klines[-1][0] - klines[0][0] == 120_000
        futures_klines = await client.futures_klines(symbol="BTCUSDT", interval="5m", limit=2)
        assert [row[0] % 300_000 for row in futures_klines] == [0, 0]
        aggregates = await client.get_aggregate_trades(symbol="BTCUSDT", limit=4)
        assert len(aggregates) == 4
        info = await client.get_exchange_info()
        assert [symbol["symbol"] for symbol in info["symbols"]] == ["BTCUSDT"]
    finally:
        await client.close_connection()


async def test_simulator_weight_limit_answers_429_then_418() -> None:
    config = SimulatorConfig(speed=1.0, spot_weight_limit=60, requests_before_ban=2, ban_s=30.0)
    async with ExchangeSimulator(config) as sim:
        url = sim.api_url + "/v3/exchangeInfo"
        statuses = []
        for _ in range(6):
            status, headers, _ = await _get(url)
            statuses.append(status)
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
        # 3 x 20 weight fit; then 429s, and calling through them earns a 418 ban.
        assert statuses == [200, 200, 200, 429, 429, 418]
        status, headers, body = await _get(sim.api_url + "/v3/ping")
        assert status == 418
        assert int(headers["Retry-After"]) >= 29
        assert body["code"] == -1003
        assert sim.stats.rest_429 == 2


async def test_simulator_fault_429_with_retry_after_then_recovers() -> None:
    config = SimulatorConfig(speed=1.0)
    config.faults.rest_429 = 2
    config.faults.retry_after_s = 7
    async with ExchangeSimulator(config) as sim:
        results = [await _get(sim.futures_api_url + "/v1/ping") for _ in range(3)]
        assert [status for status, _, _ in results] == [429, 429, 200]
        assert results[0][1]["Retry-After"] == "7"
        client = await _client_class(sim).create()
        await client.close_connection()


async def test_simulator_exchange_info_increments_from_the_captures_decimals(
    replayed: ExchangeSimulator,
) -> None:
    status, _, spot = await _get(replayed.api_url + '/v3/exchangeInfo?symbols=["BTCUSDT"]')
    assert status == 200
    (info,) = spot["symbols"]
    filters = {f["filterType"]: f for f in info["filters"]}
    # The finest decimals the 2024 spot capture carries: Binance's own BTCUSDT tick and step.
    assert (filters["PRICE_FILTER"]["tickSize"], filters["LOT_SIZE"]["stepSize"]) == (
        "0.01",
        "0.00001",
    )
    _, _, futures = await _get(replayed.futures_api_url + "/v1/exchangeInfo")
    (usdm,) = [s for s in futures["symbols"] if s["symbol"] == "BTCUSDT"]
    ticks = {f["filterType"]: f for f in usdm["filters"]}
    assert (ticks["PRICE_FILTER"]["tickSize"], ticks["LOT_SIZE"]["stepSize"]) == ("0.1", "0.001")
    status, _, refused = await _get(replayed.api_url + "/v3/exchangeInfo?symbols=notjson")
    assert status == 400
    assert refused["code"] == -1100


async def test_simulator_trade_csv_symbols_listed_without_increments(tmp_path: Path) -> None:
    path = tmp_path / "SOLUSDT-trades-2024-08-08.csv"
    path.write_text("1,150.25,0.5,75.125,1723161255611,true,true\n", encoding="utf-8")
    config = SimulatorConfig(sources=[SourceSpec(path)], paused=True)
    async with ExchangeSimulator(config) as sim:
        _, _, body = await _get(sim.api_url + "/v3/exchangeInfo?symbol=SOLUSDT")
    # A CSV may hold millions of rows: not scanned, so the venue's sizes stay unknown.
    assert [(s["symbol"], s["filters"]) for s in body["symbols"]] == [("SOLUSDT", [])]
