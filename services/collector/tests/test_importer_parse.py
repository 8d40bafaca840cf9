"""Reading Binance public trade and aggTrade CSV rows for `tickmesh import`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickmesh.collector.binance_csv import (
    CsvKind,
    ImportFileError,
    detect_kind,
    rows_to_run,
    time_ns,
)
from tickmesh.collector.import_state import ImportState
from tickmesh.collector.importer import import_files, symbol_from_name
from tickmesh.v2 import market_pb2

SPOT_TRADE = ["1520538925", "2683.8", "0.002", "5.3676", "1723161255611", "True", "True"]
USDM_TRADE = ["5140946780", "61000.1", "0.010", "610.001", "1723161255611", "false"]
USDM_AGG = ["2294738501", "61000.1", "0.010", "5140946780", "5140946782", "1723161255611", "true"]
SPOT_AGG = [*USDM_AGG, "True"]


def test_detect_kind_from_rows_and_headers() -> None:
    assert detect_kind(SPOT_TRADE) is CsvKind.TRADES
    assert detect_kind(USDM_TRADE) is CsvKind.TRADES
    assert detect_kind(USDM_AGG) is CsvKind.AGG_TRADES
    assert detect_kind(SPOT_AGG) is CsvKind.AGG_TRADES
    assert detect_kind(["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]) is (
        CsvKind.TRADES
    )
    header = ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id"]
    assert detect_kind(header) is CsvKind.AGG_TRADES
    with pytest.raises(ImportFileError):
        detect_kind(["1", "2", "3"])


def test_time_units_milliseconds_and_microseconds() -> None:
    assert time_ns("1723161255611") == 1_723_161_255_611_000_000
    assert time_ns("1735689600123456") == 1_735_689_600_123_456_000


def test_agg_trade_rows_carry_trade_counts_and_sides() -> None:
    chunk = rows_to_run([USDM_AGG], CsvKind.AGG_TRADES, market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT")
    assert chunk.refused == []
    run = chunk.run
    assert list(run.trade_ids) == [2294738501]
    assert list(run.trade_counts) == [3]
    assert list(run.sides) == [market_pb2.AGGRESSOR_SIDE_SELL]
    assert list(run.event_time_ns) == [1_723_161_255_611_000_000]
    trades = rows_to_run([USDM_TRADE], CsvKind.TRADES, market_pb2.EXCHANGE_BINANCE_USDM, "X").run
    assert list(trades.sides) == [market_pb2.AGGRESSOR_SIDE_BUY]
    assert not len(trades.trade_counts)


def test_symbol_from_file_name_and_state_round_trip(tmp_path: Path) -> None:
    assert symbol_from_name("/data/BTCUSDT-trades-2024-08-08.zip") == "BTCUSDT"
    state = ImportState.load(tmp_path / "state" / "import.json")
    state.record("a.csv", 41)
    state.save()
    loaded = ImportState.load(tmp_path / "state" / "import.json")
    assert loaded.last_id("a.csv") == 41
    assert not loaded.done("a.csv")
    assert loaded.last_id("b.csv") is None


async def test_unreachable_bar_service_fails_fast_and_records_nothing(tmp_path: Path) -> None:
    csv_path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    csv_path.write_text(",".join(USDM_TRADE) + "\n", encoding="utf-8")
    with pytest.raises(ConnectionError):
        await import_files(
            [csv_path],
            "127.0.0.1:1",
            state_path=tmp_path / "state.json",
            connect_timeout_s=0.5,
            show_progress=False,
        )
    assert ImportState.load(tmp_path / "state.json").files == {}


def test_csv_rows_exact_and_bad_rows_refused_alone_naming_the_field() -> None:
    bad_price = ["1520538926", "0", "0.002", "0", "1723161255612", "True", "True"]
    bad_qty = ["1520538927", "2683.8", "1e-3", "0", "1723161255613", "True", "True"]
    rows = [SPOT_TRADE, bad_price, bad_qty]
    chunk = rows_to_run(rows, CsvKind.TRADES, market_pb2.EXCHANGE_BINANCE_SPOT, "ETHUSDT")
    assert list(chunk.run.trade_ids) == [1520538925]
    assert (list(chunk.run.prices), chunk.run.price_scale) == ([26838], 1)
    assert (list(chunk.run.quantities), chunk.run.quantity_scale) == ([2], 3)
    assert len(chunk.refused) == 2
    assert chunk.refused[0].startswith("row 1520538926: price:")
    assert chunk.refused[1].startswith("row 1520538927: qty:")
