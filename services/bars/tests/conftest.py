"""Shared fixtures for the bar engine tests: the read-only market-data fixtures, loaded once.

The loaders here are test-only: the real Binance parsers belong to the collector.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from tickmesh.bars.trades import TradeRun
from tickmesh.core.fixtures import fixtures_root
from tickmesh.v2 import market_pb2

from .kline_helpers import KLINE_FIELDS, FuturesKlines, OhlcvKlines, exact_column

NS_PER_MS = 1_000_000

FUTURES_CAPTURES: dict[str, tuple[str, str]] = {
    "2023-04-04": (
        "BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt",
        "BTCUSDT-1m-2023-04-04_2350_to_2023-04-05_0010.csv",
    ),
    "2024-07-18": (
        "BTCUSDT_ws_trade_2024-07-18T2357_to_2024-07-19T0005.txt",
        "BTCUSDT-1m-2024-07-18_2350_to_2024-07-19_0010.csv",
    ),
    "2024-08-08": (
        "BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt",
        "BTCUSDT-1m-2024-08-08_2350_to_2024-08-09_0010.csv",
    ),
}

_TRADE_TYPES = {
    "MARKET": market_pb2.TRADE_TYPE_MARKET,
    "INSURANCE_FUND": market_pb2.TRADE_TYPE_INSURANCE_FUND,
    "ADL": market_pb2.TRADE_TYPE_ADL,
}


def load_futures_capture(path: Path) -> TradeRun:
    """Load a "<local ts> <raw json>" USD-M @trade capture as one run, in capture order."""
    ids: list[int] = []
    prices: list[str] = []
    quantities: list[str] = []
    times: list[int] = []
    types: list[int] = []
    sides: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            data = json.loads(line.split(" ", 1)[1])["data"]
            ids.append(data["t"])
            prices.append(data["p"])
            quantities.append(data["q"])
            times.append(data["T"] * NS_PER_MS)
            types.append(_TRADE_TYPES.get(data["X"], market_pb2.TRADE_TYPE_OTHER))
            # m: the buyer was the maker, so the seller took liquidity.
            sides.append(
                market_pb2.AGGRESSOR_SIDE_SELL if data["m"] else market_pb2.AGGRESSOR_SIDE_BUY
            )
    price_column, price_scale = exact_column(prices, "p")
    quantity_column, quantity_scale = exact_column(quantities, "q")
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_USDM,
        "BTCUSDT",
        ids,
        price_column,
        quantity_column,
        times,
        types,
        sides=sides,
        price_scale=price_scale,
        quantity_scale=quantity_scale,
    )


def load_futures_klines(path: Path) -> FuturesKlines:
    """Load a Binance Vision USD-M 1m klines CSV (with header)."""
    klines: FuturesKlines = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            klines[int(row["open_time"]) * NS_PER_MS] = {
                name: Decimal(row[name]) for name in KLINE_FIELDS
            }
    return klines


def load_xrpeth_aggtrades(path: Path) -> TradeRun:
    """Load the derived XRPETH aggTrades CSV; each aggregate carries l - f + 1 trades."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    prices, price_scale = exact_column([row["price"] for row in rows], "price")
    quantities, quantity_scale = exact_column([row["quantity"] for row in rows], "quantity")
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_SPOT,
        "XRPETH",
        [int(row["agg_trade_id"]) for row in rows],
        prices,
        quantities,
        [int(row["transact_time"]) * NS_PER_MS for row in rows],
        trade_counts=np.array(
            [int(row["last_trade_id"]) - int(row["first_trade_id"]) + 1 for row in rows]
        ),
        sides=[
            market_pb2.AGGRESSOR_SIDE_SELL
            if row["is_buyer_maker"] == "True"
            else market_pb2.AGGRESSOR_SIDE_BUY
            for row in rows
        ],
        price_scale=price_scale,
        quantity_scale=quantity_scale,
    )


def load_ohlcv_json(path: Path) -> OhlcvKlines:
    """Load ccxt-style [[ms, o, h, l, c, v], ...] klines; each float as Decimal(repr(float)).

    ccxt parsed Binance's decimal strings into floats; repr gives the shortest string that
    reads back as the same float, which is Binance's string for these short decimals.
    """
    rows = json.loads(path.read_text(encoding="utf-8"))
    return {
        int(row[0]) * NS_PER_MS: (
            Decimal(repr(float(row[1]))),
            Decimal(repr(float(row[2]))),
            Decimal(repr(float(row[3]))),
            Decimal(repr(float(row[4]))),
            Decimal(repr(float(row[5]))),
        )
        for row in rows
    }


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared fixtures directory, read in place (never copied or edited)."""
    root = fixtures_root()
    assert root.is_dir(), f"fixtures not found at {root}; set TICKMESH_FIXTURES"
    return root


@pytest.fixture(scope="session")
def futures_cases(fixtures_dir: Path) -> dict[str, tuple[TradeRun, FuturesKlines]]:
    """Each USD-M BTCUSDT capture with Binance's own 1m klines for the same window."""
    folder = fixtures_dir / "binance_futures_um"
    return {
        label: (load_futures_capture(folder / trades), load_futures_klines(folder / klines))
        for label, (trades, klines) in FUTURES_CAPTURES.items()
    }


@pytest.fixture(scope="session")
def btc_2023_trades(futures_cases: dict[str, tuple[TradeRun, FuturesKlines]]) -> TradeRun:
    """The 2023-04-04/05 USD-M capture, which holds the INSURANCE_FUND trade."""
    return futures_cases["2023-04-04"][0]


@pytest.fixture(scope="session")
def xrpeth_trades(fixtures_dir: Path) -> TradeRun:
    """XRPETH spot aggTrades, 2019-10-11 .. 2019-10-13."""
    folder = fixtures_dir / "binance_spot" / "freqtrade_XRPETH"
    return load_xrpeth_aggtrades(folder / "XRPETH-aggTrades-2019-10-11_to_2019-10-13.derived.csv")


@pytest.fixture(scope="session")
def xrpeth_klines(fixtures_dir: Path) -> dict[str, OhlcvKlines]:
    """Binance's XRPETH 1m and 5m klines (OHLCV only) for the aggTrades window."""
    folder = fixtures_dir / "binance_spot" / "freqtrade_XRPETH"
    return {
        "1m": load_ohlcv_json(folder / "XRP_ETH-1m.json"),
        "5m": load_ohlcv_json(folder / "XRP_ETH-5m.json"),
    }
