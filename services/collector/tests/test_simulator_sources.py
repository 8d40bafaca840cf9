"""Simulator sources: capture scanning, Binance trade CSVs (plain and zipped), random walk."""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path

import pytest

from tickmesh.collector.simulator import Market, SimulatorConfig, SourceSpec
from tickmesh.collector.simulator.sources import (
    iter_capture,
    open_sources,
    random_walk,
    scan_capture,
)

CSV_ROWS = [
    "3735683259,61837.63000000,0.02000000,1236.75260000,1723161255342,True,True",
    "3735683260,61837.63000000,0.04800000,2968.20624000,1723161255617,True,True",
    "3735683261,61837.64000000,0.00100000,61.83764000,1723161255617000,False,True",
]
HEADER = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"


@pytest.mark.parametrize(
    ("name", "market", "symbols"),
    [
        ("binance_futures_um/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt",
         Market.USDM, {"ETHUSDT"}),
        ("binance_spot/BTCUSDT_ws_trade_2023-04-04T2359_to_2023-04-05T0006.txt",
         Market.SPOT, {"BTCUSDT"}),
        ("binance_ws_captures/cryptofeed_BINANCE_FUTURES.ws.1.0_usdm_2021-07-22.txt",
         Market.USDM, {"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"}),
    ],
)  # fmt: skip
def test_sources_scan_capture_detects_venue_and_symbols(
    fixtures_dir: Path, name: str, market: Market, symbols: set[str]
) -> None:
    assert scan_capture(fixtures_dir / name) == (market, symbols)


def test_sources_cryptofeed_capture_replays_every_stream(fixtures_dir: Path) -> None:
    path = fixtures_dir / "binance_ws_captures" / "cryptofeed_BINANCE.ws.1.0_spot_2021-08-14.txt"
    events = list(iter_capture(path, Market.SPOT))
    assert len(events) == 28 + 17 + 412 + 546
    assert sum(event.agg is not None for event in events) == 28
    assert [event.at_ns for event in events] == sorted(event.at_ns for event in events)


@pytest.mark.parametrize(("header", "zipped"), [(True, False), (False, False), (True, True)])
def test_sources_trade_csv_header_optional_and_zip(
    tmp_path: Path, header: bool, zipped: bool
) -> None:
    text = "\n".join(([HEADER] if header else []) + CSV_ROWS) + "\n"
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text(text)
    if zipped:
        with zipfile.ZipFile(tmp_path / "BTCUSDT-trades-2024-08-08.zip", "w") as archive:
            archive.write(path, path.name)
        path.unlink()
        path = tmp_path / "BTCUSDT-trades-2024-08-08.zip"
    events, listed = open_sources(SimulatorConfig(sources=[SourceSpec(path)]), now_ms=0)
    trades = [event.trade for event in events if event.trade is not None]
    assert listed[Market.SPOT] == {"BTCUSDT"}
    assert [trade.trade_id for trade in trades] == [3735683259, 3735683260, 3735683261]
    assert [trade.is_buyer_maker for trade in trades] == [True, True, False]
    # The last row's time is in microseconds, as Binance Vision spot files are since 2025.
    assert [trade.time_ms for trade in trades] == [1723161255342, 1723161255617, 1723161255617]
    assert trades[0].price == "61837.63000000"
    assert trades[0].symbol == "BTCUSDT"


def test_sources_random_walk_same_seed_same_trades() -> None:
    def walk(seed: int) -> list[tuple[str, int, str, str, int, bool]]:
        events = random_walk(
            ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
            Market.SPOT,
            seed=seed,
            trades_per_second=20.0,
            start_ms=1_700_000_000_000,
        )
        return [
            (t.symbol, t.trade_id, t.price, t.qty, t.time_ms, t.is_buyer_maker)
            for event in itertools.islice(events, 3000)
            if (t := event.trade) is not None
        ]

    first, again, other = walk(7), walk(7), walk(8)
    assert first == again
    assert first != other
    times = [row[4] for row in first]
    assert times == sorted(times)
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        ids = [row[1] for row in first if row[0] == symbol]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous per symbol
        assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in first)


def test_sources_random_walk_count_limits_each_symbol() -> None:
    config = SimulatorConfig(symbols=["AUSDT", "BUSDT"], random_walk_trades=50, seed=1)
    events, listed = open_sources(config, now_ms=1_000)
    trades = [event.trade for event in events if event.trade is not None]
    assert len(trades) == 100
    assert listed[Market.SPOT] == {"AUSDT", "BUSDT"}
    assert all(trade.time_ms > 1_000 for trade in trades)
