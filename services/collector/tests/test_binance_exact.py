"""Exact prices and quantities from the wire, non-market USD-M events, tick/step refusals."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tickmesh.collector.binance import BinanceStreamDecoder, DecodeErrorKind
from tickmesh.collector.binance.columns import (
    CACHE_LIMIT,
    OffIncrementError,
    SymbolTradesBuilder,
    cached_values,
    read_written,
    significant_decimals,
)
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.binance.parse import parse_rest_historical_trades
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.core.decimals import DecimalValueError, format_decimal
from tickmesh.v2 import market_pb2

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
RECEIVED_NS = 1_723_161_600_000_000_000
SPOT_CAPTURE = "binance_spot/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"
USDM_CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt"
# A real-shaped USD-M "NA" event: Binance sends it with price and quantity 0.
USDM_NA = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161599000,"T":1723161598999,'
    b'"s":"BTCUSDT","t":5266605248,"p":"0","q":"0","X":"NA","m":false}}'
)


def _frames(path: Path) -> list[bytes]:
    with path.open("rb") as handle:
        return [line.split(b" ", 1)[1].rstrip(b"\n") for line in handle if b" " in line]


def _one_run(decoder: BinanceStreamDecoder) -> market_pb2.SymbolTrades:
    (run,) = decoder.take()
    return run


def _texts(mantissas: object, scale: int) -> list[str]:
    return [format_decimal(int(m), scale) for m in mantissas]  # type: ignore[attr-defined]


def test_spot_capture_first_trade_mantissa_and_scale(fixtures_dir: Path) -> None:
    frames = _frames(fixtures_dir / SPOT_CAPTURE)
    decoder = BinanceStreamDecoder(SPOT)
    first = json.loads(frames[0])["data"]
    assert first["p"] == "61837.63000000"
    assert decoder.feed(frames[0], RECEIVED_NS) is None
    run = _one_run(decoder)
    assert (list(run.prices), run.price_scale) == ([6183763], 2)
    assert Decimal(format_decimal(run.quantities[0], run.quantity_scale)) == Decimal(first["q"])


def test_captures_reproduce_every_string_exactly_in_batches(fixtures_dir: Path) -> None:
    for name, exchange in ((SPOT_CAPTURE, SPOT), (USDM_CAPTURE, USDM)):
        frames = _frames(fixtures_dir / name)
        decoder = BinanceStreamDecoder(exchange)
        got_prices: list[str] = []
        got_quantities: list[str] = []
        for start in range(0, len(frames), 1000):
            assert decoder.feed_many(frames[start : start + 1000], RECEIVED_NS) == []
            run = _one_run(decoder)
            # One scale per run: the most decimals seen in it (trailing zeros do not count).
            assert 0 <= run.price_scale <= 8
            got_prices += _texts(run.prices, run.price_scale)
            got_quantities += _texts(run.quantities, run.quantity_scale)
        rows = [json.loads(frame)["data"] for frame in frames]
        assert [Decimal(p) for p in got_prices] == [Decimal(row["p"]) for row in rows]
        assert [Decimal(q) for q in got_quantities] == [Decimal(row["q"]) for row in rows]
        # format_decimal writes no trailing zeros, so the text equals the wire's, normalised.
        assert got_prices[0] == format(Decimal(rows[0]["p"]).normalize(), "f")


def test_usdm_capture_scales_are_binance_tick_and_step(fixtures_dir: Path) -> None:
    decoder = BinanceStreamDecoder(USDM)
    assert decoder.feed_many(_frames(fixtures_dir / USDM_CAPTURE), RECEIVED_NS) == []
    run = _one_run(decoder)
    assert (run.price_scale, run.quantity_scale) == (1, 3)  # tick 0.10, step 0.001


def test_finer_value_rescales_earlier_rows_exactly() -> None:
    builder = SymbolTradesBuilder(SPOT, "BTCUSDT")
    builder.append(1, "61837.60000000", "1.00000000", 1, 1, 1, 1, 1)
    builder.append(2, "61837.63000000", "0.00056000", 1, 2, 1, 1, 1)
    builder.append(3, "61837", "2", 1, 3, 1, 1, 1)
    run = builder.to_proto()
    assert (list(run.prices), run.price_scale) == ([6183760, 6183763, 6183700], 2)
    assert (list(run.quantities), run.quantity_scale) == ([100000, 56, 200000], 5)
    builder.clear()
    assert (builder.price_scale, builder.quantity_scale) == (0, 0)


def test_usdm_na_event_zero_price_is_non_market_not_an_error() -> None:
    decoder = BinanceStreamDecoder(USDM)
    assert decoder.feed(USDM_NA, RECEIVED_NS) is None
    assert decoder.stats.error_count == 0
    run = _one_run(decoder)
    assert list(run.trade_ids) == [5266605248]
    assert list(run.types) == [market_pb2.TRADE_TYPE_OTHER]
    assert list(run.prices) == [0]
    assert list(run.quantities) == [0]
    # Its id is delivered, so the gap book sees it and never asks REST for it.
    book = GapBook(CollectorMetrics(CollectorRegistry()))
    assert book.deliver(run) is run
    assert book.tracker(USDM, "BTCUSDT").gaps == []


def test_market_trade_with_zero_price_still_refused_naming_p() -> None:
    decoder = BinanceStreamDecoder(USDM)
    error = decoder.feed(USDM_NA.replace(b'"X":"NA"', b'"X":"MARKET"'), RECEIVED_NS)
    assert error is not None
    assert error.kind is DecodeErrorKind.INVALID_VALUE
    assert error.message.startswith("p:")


def test_off_tick_price_refused_naming_p_and_its_id_counted_as_seen(fixtures_dir: Path) -> None:
    frames = _frames(fixtures_dir / USDM_CAPTURE)[:3]
    bad = frames[1].replace(b'"p":"', b'"p":"1', 1)
    data = json.loads(frames[1])["data"]
    bad = bad.replace(f'"p":"1{data["p"]}"'.encode(), f'"p":"{data["p"]}5"'.encode())
    decoder = BinanceStreamDecoder(USDM)
    decoder.set_increments("BTCUSDT", 1, 3)
    assert decoder.feed(frames[0], RECEIVED_NS) is None
    error = decoder.feed(bad, RECEIVED_NS)
    assert error is not None
    assert error.kind is DecodeErrorKind.OFF_INCREMENT
    assert error.message.startswith("p:")
    assert "tick size" in error.message
    assert decoder.feed(frames[2], RECEIVED_NS) is None
    run = _one_run(decoder)
    assert len(run.trade_ids) == 2
    refused = decoder.take_refused()
    assert refused == {"BTCUSDT": [data["t"]]}
    book = GapBook(CollectorMetrics(CollectorRegistry()))
    book.deliver(run)
    assert book.tracker(USDM, "BTCUSDT").missing_ids == 1
    book.mark_seen(USDM, "BTCUSDT", refused["BTCUSDT"])
    assert book.tracker(USDM, "BTCUSDT").missing_ids == 0


def test_off_step_quantity_refused_naming_q() -> None:
    decoder = BinanceStreamDecoder(SPOT)
    decoder.set_increments("BTCUSDT", 2, 5)
    frame = (
        b'{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"61837.63000000",'
        b'"q":"0.00000100","T":1,"m":true,"M":true}'
    )
    error = decoder.feed(frame, RECEIVED_NS)
    assert error is not None
    assert error.kind is DecodeErrorKind.OFF_INCREMENT
    assert error.message.startswith("q:")
    assert "step size" in error.message
    assert decoder.take_refused() == {"BTCUSDT": [7]}


def test_rest_page_off_tick_row_left_out_rest_kept() -> None:
    page = (
        b'[{"id":1,"price":"4.000001","qty":"1.0","time":1,"isBuyerMaker":true},'
        b'{"id":2,"price":"4.0000015","qty":"1.0","time":2,"isBuyerMaker":false},'
        b'{"id":3,"price":"4.000002","qty":"1.0","time":3,"isBuyerMaker":false}]'
    )
    refused: list[object] = []
    builder = parse_rest_historical_trades(
        page,
        SPOT,
        "XRPETH",
        RECEIVED_NS,
        increments=(6, 1),
        refused=refused,  # type: ignore[arg-type]
    )
    run = builder.to_proto()
    assert list(run.trade_ids) == [1, 3]
    assert (list(run.prices), run.price_scale) == ([4000001, 4000002], 6)
    assert len(refused) == 1
    assert str(refused[0]).startswith("price:")
    assert np.array_equal(builder.trade_ids(), np.array([1, 3]))


def test_read_written_keeps_written_scale_and_refuses_non_plain_naming_the_field() -> None:
    assert read_written("61837.63000000", "p") == (6183763000000, 8)
    assert significant_decimals(6183763000000, 8) == 2
    assert significant_decimals(0, 3) == 0
    assert read_written("100", "q") == (100, 0)
    assert read_written("0.001", "q") == (1, 3)
    # Not plain ASCII digits: parse_decimal reads it exactly or refuses it naming the field.
    assert read_written(".5", "p") == (5, 1)
    assert read_written("-1.50", "p") == (-15, 1)
    for bad in ("1e-3", "١٢", "1_000", " 1", "nan", "", "1.2.3", "99999999999999999999"):
        with pytest.raises(DecimalValueError, match=r"^p: "):
            read_written(bad, "p")


def test_a_value_one_instrument_accepted_is_still_refused_past_anothers_tick() -> None:
    # Every builder shares one cache of the values read; each checks its own tick and step.
    fine = SymbolTradesBuilder(SPOT, "SHIBUSDT", max_price_scale=8, max_quantity_scale=0)
    fine.append(1, "0.00001234", "1000", 1, 1, 1, 1, 1)
    coarse = SymbolTradesBuilder(SPOT, "BTCUSDT", max_price_scale=2, max_quantity_scale=5)
    with pytest.raises(OffIncrementError, match="tick size"):
        coarse.append(2, "0.00001234", "1", 1, 2, 1, 1, 1)
    coarse.append(3, "61837.60000000", "0.00056000", 1, 3, 1, 1, 1)  # trailing zeros are fine
    with pytest.raises(OffIncrementError, match="tick size"):
        fine.append(4, "0.000012345", "1", 1, 4, 1, 1, 1)
    for builder, price in ((fine, "0.00001234"), (coarse, "61837.6")):
        run = builder.to_proto()
        assert [format_decimal(p, run.price_scale) for p in run.prices] == [price]


def test_the_values_cache_stays_bounded_over_a_whole_market_of_builders() -> None:
    builders = [SymbolTradesBuilder(USDM, f"S{index}USDT") for index in range(2_000)]
    trade_id = 0
    for round_ in range(40):
        for index, builder in enumerate(builders):
            for _ in range(3):  # every value new: the worst case for a cache
                trade_id += 1
                builder.append(trade_id, f"{index}.{trade_id}", f"0.{trade_id}", 1, 1, 1, 1, 1)
            builder.clear()
        assert cached_values() <= 2 * CACHE_LIMIT, round_


def test_the_values_cache_stays_bounded_through_one_import_sized_run() -> None:
    # An import appends a million rows to one builder and never clears it.
    builder = SymbolTradesBuilder(USDM, "BTCUSDT")
    for trade_id in range(1, 3 * CACHE_LIMIT):
        builder.append(trade_id, f"1.{trade_id}", "1", 1, 1, 1, 1, 1)
    assert cached_values() <= 2 * CACHE_LIMIT
    assert len(builder) == 3 * CACHE_LIMIT - 1
