"""Shared test data for the analytics domain: the fixture locator, reference series and random walks."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tickmesh.analytics.bars import BarInput
from tickmesh.core.fixtures import fixtures_root as fixtures_dir

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 1440 * NS_PER_MINUTE


def random_walk_bars(
    count: int, seed: int, start_ns: int = 0, step_ns: int = NS_PER_MINUTE
) -> list[BarInput]:
    """Return `count` consistent OHLCV bars of a geometric random walk around 100."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, count)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.005, count))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.005, count))
    volume = rng.uniform(1.0, 100.0, count)
    taker_buy = volume * rng.uniform(0.0, 1.0, count)
    return [
        BarInput(
            open_time_ns=start_ns + index * step_ns,
            open=float(open_[index]),
            high=float(high[index]),
            low=float(low[index]),
            close=float(close[index]),
            volume=float(volume[index]),
            quote_volume=float(volume[index] * close[index]),
            trade_count=int(volume[index]) + 1,
            taker_buy_volume=float(taker_buy[index]),
        )
        for index in range(count)
    ]


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The shared fixtures directory, read in place."""
    path = fixtures_dir()
    assert path.is_dir(), f"fixtures not found at {path}; set TICKMESH_FIXTURES"
    return path


@pytest.fixture(scope="session")
def reference_bars(fixtures: Path) -> list[BarInput]:
    """TA-Lib's own 252-bar daily regression series, one bar per UTC day."""
    with (fixtures / "indicators" / "talib_regtest_reference_daily_252.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [
        BarInput(
            open_time_ns=int(row["index"]) * NS_PER_DAY,
            open=float(row["open"]),
            high=float(row["high"]),
            low=float(row["low"]),
            close=float(row["close"]),
            volume=float(row["volume"]),
        )
        for row in rows
    ]


@pytest.fixture(scope="session")
def reference_outputs(fixtures: Path) -> list[dict[str, str]]:
    """TA-Lib 0.8.1's full-precision outputs on the 252-bar series (empty string = warm-up)."""
    path = fixtures / "indicators" / "talib_0.8.1_outputs_on_regtest_reference_252.csv"
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _klines(path: Path) -> list[BarInput]:
    rows = json.loads(path.read_text())
    return [
        BarInput(
            open_time_ns=int(row[0]) * 1_000_000,
            open=float(row[1]),
            high=float(row[2]),
            low=float(row[3]),
            close=float(row[4]),
            volume=float(row[5]),
        )
        for row in rows
    ]


@pytest.fixture(scope="session")
def xrpeth_minute_bars(fixtures: Path) -> list[BarInput]:
    """Binance spot XRPETH 1m klines (zero-volume rows are flats)."""
    return _klines(fixtures / "binance_spot" / "freqtrade_XRPETH" / "XRP_ETH-1m.json")


@pytest.fixture(scope="session")
def xrpeth_five_minute_bars(fixtures: Path) -> list[BarInput]:
    """Binance spot XRPETH 5m klines over the same window."""
    return _klines(fixtures / "binance_spot" / "freqtrade_XRPETH" / "XRP_ETH-5m.json")


@pytest.fixture(scope="session")
def make_random_walk() -> Callable[[int, int], list[BarInput]]:
    """A factory of random-walk bars: (count, seed) -> bars one minute apart from the epoch."""
    return lambda count, seed: random_walk_bars(count, seed)
