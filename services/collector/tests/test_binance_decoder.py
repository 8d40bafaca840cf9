"""The Binance stream decoder against real recorded payloads and malformed frames."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tickmesh.collector.binance import BinanceStreamDecoder, DecodeErrorKind
from tickmesh.v2 import market_pb2

from .exact_values import decimals, prices, quantities

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
SELL = market_pb2.AGGRESSOR_SIDE_SELL
BUY = market_pb2.AGGRESSOR_SIDE_BUY
RECEIVED_NS = 1_700_000_000_000_000_000


def _capture_frames(path: Path) -> list[bytes]:
    """Frames of a "<local ts> <raw json>" capture (hftbacktest style)."""
    with path.open("rb") as handle:
        return [line.split(b" ", 1)[1].rstrip(b"\n") for line in handle if line.strip()]


def _cryptofeed_frames(path: Path) -> list[bytes]:
    """Frames of a cryptofeed capture: a URL line, then "<ts>: <raw msg>" lines."""
    with path.open("rb") as handle:
        lines = handle.read().splitlines()
    assert lines[0].startswith(b"wss://")
    return [line.split(b": ", 1)[1] for line in lines[1:] if line.strip()]


def _all_trades(decoder: BinanceStreamDecoder) -> dict[str, market_pb2.SymbolTrades]:
    return {run.symbol: run for run in decoder.take()}


def _samples(fixtures_dir: Path) -> dict[str, str]:
    path = fixtures_dir / "binance_ws_captures" / "binance_ws_single_message_samples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["label"]: row["raw"] for row in rows}


def test_decoder_spot_trade_2024_sample_exact_columns(fixtures_dir: Path) -> None:
    decoder = BinanceStreamDecoder(SPOT)
    assert decoder.feed(_samples(fixtures_dir)["spot_trade_combined_2024"], RECEIVED_NS) is None
    run = _all_trades(decoder)["BTCUSDT"]
    assert run.exchange == SPOT
    assert list(run.trade_ids) == [3735683259]
    assert prices(run) == decimals("61837.63")
    assert quantities(run) == decimals("0.02")
    assert list(run.sides) == [SELL]
    assert list(run.event_time_ns) == [1723161255342 * 1_000_000]
    assert list(run.receive_time_ns) == [RECEIVED_NS]
    assert list(run.types) == [market_pb2.TRADE_TYPE_MARKET]
    assert list(run.trade_counts) == []


def test_decoder_spot_trade_2023_with_order_ids_parses(fixtures_dir: Path) -> None:
    decoder = BinanceStreamDecoder(SPOT)
    raw = _samples(fixtures_dir)["spot_trade_combined_2023_with_b_a_fields"]
    assert decoder.feed(raw, RECEIVED_NS) is None
    run = _all_trades(decoder)["BTCUSDT"]
    assert list(run.trade_ids) == [3071245454]
    assert prices(run) == decimals("28165.47")
    assert quantities(run) == decimals("0.00056")
    assert list(run.event_time_ns) == [1680652799999 * 1_000_000]


def test_decoder_usdm_trade_types_map_x_field(fixtures_dir: Path) -> None:
    samples = _samples(fixtures_dir)
    decoder = BinanceStreamDecoder(USDM)
    assert decoder.feed(samples["usdm_trade_combined_2024"], RECEIVED_NS) is None
    assert decoder.feed(samples["usdm_trade_INSURANCE_FUND_2023"], RECEIVED_NS) is None
    run = _all_trades(decoder)["BTCUSDT"]
    assert list(run.trade_ids) == [5182005737, 3535191080]
    assert list(run.types) == [
        market_pb2.TRADE_TYPE_MARKET,
        market_pb2.TRADE_TYPE_INSURANCE_FUND,
    ]
    assert prices(run) == decimals("63943.9", "28722.5")
    assert list(run.sides) == [SELL, SELL]


@pytest.mark.parametrize(("x_value", "trade_type"), [("ADL", 3), ("NA", 4), ("SOMETHING", 4)])
def test_decoder_usdm_non_market_x_maps_to_trade_type(x_value: str, trade_type: int) -> None:
    frame = (
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"BTCUSDT",'
        f'"t":7,"p":"1.5","q":"2","X":"{x_value}","m":false}}}}'
    )
    decoder = BinanceStreamDecoder(USDM)
    assert decoder.feed(frame, RECEIVED_NS) is None
    run = _all_trades(decoder)["BTCUSDT"]
    assert list(run.types) == [trade_type]
    assert list(run.sides) == [BUY]


def test_decoder_agg_trade_samples_count_trades(fixtures_dir: Path) -> None:
    samples = _samples(fixtures_dir)
    spot = BinanceStreamDecoder(SPOT)
    assert spot.feed(samples["spot_aggTrade_combined_2021"], RECEIVED_NS) is None
    run = _all_trades(spot)["FTMUSDT"]
    assert list(run.trade_ids) == [31718372]
    assert prices(run) == decimals("0.33993")
    assert list(run.trade_counts) == []  # one trade each: the column stays empty
    usdm = BinanceStreamDecoder(USDM)
    assert usdm.feed(samples["usdm_aggTrade_combined_2021"], RECEIVED_NS) is None
    run = _all_trades(usdm)["CTKUSDT"]
    assert list(run.trade_ids) == [16599292]
    assert list(run.sides) == [BUY]
    assert list(run.event_time_ns) == [1626992741421 * 1_000_000]


def test_decoder_docs_agg_trade_raw_stream_counts_l_minus_f_plus_one(fixtures_dir: Path) -> None:
    path = fixtures_dir / "binance_ws_captures" / "binance_spot_docs_ws_payload_examples.json"
    examples = json.loads(path.read_text())
    decoder = BinanceStreamDecoder(SPOT)
    # A raw /ws/<stream> connection sends the payload without the combined wrapper.
    assert decoder.feed(json.dumps(examples["Aggregate Trade Streams"]), RECEIVED_NS) is None
    assert decoder.feed(json.dumps(examples["Trade Streams"]), RECEIVED_NS) is None
    assert decoder.feed(json.dumps(examples["Kline/Candlestick Streams for UTC"])) is None
    run = _all_trades(decoder)["BNBBTC"]
    assert list(run.trade_ids) == [12345, 12345]
    assert list(run.trade_counts) == [6, 1]
    assert decoder.stats.ignored["kline"] == 1


def test_decoder_non_trade_samples_ignored_and_counted(fixtures_dir: Path) -> None:
    samples = _samples(fixtures_dir)
    decoder = BinanceStreamDecoder(SPOT)
    non_trade = [
        label for label in samples if "kline" in label or "book" in label or "depth" in label
    ]
    assert decoder.feed_many(samples[label] for label in non_trade) == []
    assert decoder.stats.trades == 0
    assert decoder.stats.ignored == Counter({"kline": 4, "bookTicker": 1, "depth": 1})


CAPTURES = [
    ("binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt", USDM,
     "BTCUSDT", 12935, 3535186032),
    ("binance_futures_um/BTCUSDT_ws_trade_2024-07-18T2357_to_2024-07-19T0005.txt", USDM,
     "BTCUSDT", 10701, 5182005737),
    ("binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt", USDM,
     "BTCUSDT", 21313, 5266583935),
    ("binance_futures_um/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt", USDM,
     "ETHUSDT", 14076, None),
    ("binance_spot/BTCUSDT_ws_trade_2023-04-04T2359_to_2023-04-05T0006.txt", SPOT,
     "BTCUSDT", 3144, None),
    ("binance_spot/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt", SPOT,
     "BTCUSDT", 19904, 3735683259),
    ("binance_spot/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt", SPOT,
     "ETHUSDT", 14515, None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "exchange", "symbol", "count", "first_id"), CAPTURES)
def test_decoder_trade_capture_every_trade_gap_free(
    fixtures_dir: Path,
    name: str,
    exchange: market_pb2.Exchange.ValueType,
    symbol: str,
    count: int,
    first_id: int | None,
) -> None:
    frames = _capture_frames(fixtures_dir / name)
    decoder = BinanceStreamDecoder(exchange)
    assert decoder.feed_many(frames, RECEIVED_NS) == []
    run = _all_trades(decoder)[symbol]
    ids = list(run.trade_ids)
    assert len(ids) == count == decoder.stats.trades
    assert ids == list(range(ids[0], ids[0] + count))
    if first_id is not None:
        assert ids[0] == first_id
    # Prices and quantities are exactly the capture's strings, as mantissas at the run's scales.
    expected = [json.loads(frame)["data"] for frame in frames]
    assert prices(run) == [Decimal(row["p"]) for row in expected]
    assert quantities(run) == [Decimal(row["q"]) for row in expected]
    assert list(run.event_time_ns) == [row["T"] * 1_000_000 for row in expected]
    assert list(run.sides) == [SELL if row["m"] else BUY for row in expected]


def test_decoder_usdm_2023_capture_one_insurance_fund_trade(fixtures_dir: Path) -> None:
    name = "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"
    decoder = BinanceStreamDecoder(USDM)
    assert decoder.feed_many(_capture_frames(fixtures_dir / name), RECEIVED_NS) == []
    run = _all_trades(decoder)["BTCUSDT"]
    non_market = [i for i, kind in enumerate(run.types) if kind != market_pb2.TRADE_TYPE_MARKET]
    assert len(non_market) == 1
    (i,) = non_market
    assert run.trade_ids[i] == 3535191080
    assert run.types[i] == market_pb2.TRADE_TYPE_INSURANCE_FUND
    assert prices(run)[i] == Decimal("28722.50")
    assert quantities(run)[i] == Decimal("0.001")
    assert run.event_time_ns[i] == 1680652874400 * 1_000_000  # 2023-04-05 00:01:14.400
    assert run.sides[i] == SELL


def test_decoder_hftbacktest_spot_raw_capture_counts_every_stream(fixtures_dir: Path) -> None:
    path = fixtures_dir / "binance_ws_captures" / "hftbacktest_spot_btcusdt_20240808_raw.txt"
    decoder = BinanceStreamDecoder(SPOT)
    errors = decoder.feed_many(_capture_frames(path), RECEIVED_NS)
    assert decoder.stats.trades == 9757
    assert decoder.stats.ignored == Counter({"bookTicker": 28040, "depth": 3451})
    # The one line without a stream key is a REST depth snapshot the recorder interleaved.
    assert [error.kind for error in errors] == [DecodeErrorKind.UNKNOWN_STREAM]
    assert errors[0].sample.startswith('{"lastUpdateId":')


def test_decoder_hftbacktest_usdm_raw_capture_counts_every_stream(fixtures_dir: Path) -> None:
    path = fixtures_dir / "binance_ws_captures" / "hftbacktest_usdm_btcusdt_20240718_raw.txt"
    frames = _capture_frames(path)
    by_stream = Counter(json.loads(frame).get("stream", "") for frame in frames)
    decoder = BinanceStreamDecoder(USDM)
    errors = decoder.feed_many(frames, RECEIVED_NS)
    # Lines without a stream key are REST depth snapshots: rejected, never fatal.
    assert len(errors) == by_stream[""] == 1
    assert errors[0].kind == DecodeErrorKind.UNKNOWN_STREAM
    assert decoder.stats.trades == by_stream["btcusdt@trade"] > 0
    assert decoder.stats.ignored["bookTicker"] == by_stream["btcusdt@bookTicker"]
    assert decoder.stats.ignored["depth"] == by_stream["btcusdt@depth@0ms"]
    assert sum(decoder.stats.ignored.values()) + decoder.stats.trades + 1 == len(frames)


@pytest.mark.parametrize(
    ("name", "exchange", "agg_trades", "klines", "book", "depth"),
    [
        ("cryptofeed_BINANCE.ws.1.0_spot_2021-08-14.txt", SPOT, 28, 17, 412, 546),
        ("cryptofeed_BINANCE.ws.1.0_spot_2021-04-17.txt", SPOT, 24, 20, 570, 614),
        ("cryptofeed_BINANCE_FUTURES.ws.1.0_usdm_2021-07-22.txt", USDM, 91, 67, 613, 764),
    ],
)
def test_decoder_cryptofeed_capture_counts_each_stream(
    fixtures_dir: Path,
    name: str,
    exchange: market_pb2.Exchange.ValueType,
    agg_trades: int,
    klines: int,
    book: int,
    depth: int,
) -> None:
    frames = _cryptofeed_frames(fixtures_dir / "binance_ws_captures" / name)
    decoder = BinanceStreamDecoder(exchange)
    assert decoder.feed_many(frames, RECEIVED_NS) == []
    assert decoder.stats.trades == agg_trades
    assert decoder.stats.ignored == Counter({"kline": klines, "bookTicker": book, "depth": depth})
    runs = decoder.take()
    assert sum(len(run.trade_ids) for run in runs) == agg_trades
    for run in runs:
        # trade_counts, when present, is parallel to the other columns.
        assert len(run.trade_counts) in (0, len(run.trade_ids))


def test_decoder_take_splits_symbols_and_clears() -> None:
    decoder = BinanceStreamDecoder(SPOT)
    for symbol, trade_id in (("BTCUSDT", 1), ("ETHUSDT", 2), ("BTCUSDT", 3)):
        frame = (
            f'{{"stream":"{symbol.lower()}@trade","data":{{"e":"trade","E":1,"s":"{symbol}",'
            f'"t":{trade_id},"p":"10","q":"1","T":1,"m":false,"M":true}}}}'
        )
        assert decoder.feed(frame.encode()) is None
    assert decoder.pending == 3
    runs = {run.symbol: list(run.trade_ids) for run in decoder.take()}
    assert runs == {"BTCUSDT": [1, 3], "ETHUSDT": [2]}
    assert decoder.pending == 0
    assert decoder.take() == []


def test_decoder_stats_count_frames_and_trades_across_takes(fixtures_dir: Path) -> None:
    # Frames and trades are counted apart from the stats object and copied in when read.
    decoder = BinanceStreamDecoder(SPOT)
    trade = _samples(fixtures_dir)["spot_trade_combined_2024"]
    assert decoder.feed(trade, RECEIVED_NS) is None
    assert decoder.feed(b"{not json", RECEIVED_NS) is not None
    assert (decoder.stats.frames, decoder.stats.trades, decoder.pending) == (2, 1, 1)
    assert len(decoder.take()) == 1
    assert decoder.feed(trade, RECEIVED_NS) is None
    assert decoder.feed(trade, RECEIVED_NS) is None
    stats = decoder.stats
    assert (stats.frames, stats.trades, stats.error_count, decoder.pending) == (4, 3, 1, 2)
    decoder.take()
    assert (decoder.stats.frames, decoder.stats.trades, decoder.pending) == (4, 3, 0)
