"""REST trade pages (historicalTrades, aggTrades) parse into columnar SymbolTrades."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tickmesh.collector.binance import (
    RestPageError,
    parse_rest_agg_trades,
    parse_rest_historical_trades,
)
from tickmesh.v2 import market_pb2

from .exact_values import decimals, prices

SPOT_PAGE = (
    b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
    b'"time":1499865549590,"isBuyerMaker":true,"isBestMatch":true},'
    b'{"id":28458,"price":"4.00000200","qty":"1.00000000","quoteQty":"4.000002",'
    b'"time":1499865549591,"isBuyerMaker":false,"isBestMatch":true}]'
)
FUTURES_PAGE = (
    b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.00","time":'
    b'1499865549590,"isBuyerMaker":true,"isRPITrade":false}]'
)


def test_rest_historical_trades_spot_page_columns() -> None:
    builder = parse_rest_historical_trades(SPOT_PAGE, market_pb2.EXCHANGE_BINANCE_SPOT, "BNBBTC", 5)
    run = builder.to_proto()
    assert run.symbol == "BNBBTC"
    assert list(run.trade_ids) == [28457, 28458]
    assert prices(run) == decimals("4.000001", "4.000002")
    assert list(run.sides) == [market_pb2.AGGRESSOR_SIDE_SELL, market_pb2.AGGRESSOR_SIDE_BUY]
    assert list(run.event_time_ns) == [1499865549590_000_000, 1499865549591_000_000]
    assert list(run.receive_time_ns) == [5, 5]


def test_rest_historical_trades_decoded_dicts_same_as_bytes() -> None:
    decoded = json.loads(FUTURES_PAGE)
    usdm = market_pb2.EXCHANGE_BINANCE_USDM
    from_dicts = parse_rest_historical_trades(decoded, usdm, "BTCUSDT", 1).to_proto()
    from_bytes = parse_rest_historical_trades(FUTURES_PAGE, usdm, "BTCUSDT", 1).to_proto()
    assert from_dicts == from_bytes
    assert list(from_dicts.trade_ids) == [28457]


@pytest.mark.parametrize(
    "page",
    [
        b"not json",
        b'[{"id":1,"price":"0","qty":"1","time":1,"isBuyerMaker":true}]',
        b'[{"id":1,"price":"1","time":1,"isBuyerMaker":true}]',
    ],
)
def test_rest_historical_trades_bad_page_raises_page_error(page: bytes) -> None:
    with pytest.raises(RestPageError):
        parse_rest_historical_trades(page, market_pb2.EXCHANGE_BINANCE_SPOT, "BTCUSDT")


def test_rest_agg_trades_freqtrade_rows_count_every_trade(fixtures_dir: Path) -> None:
    path = fixtures_dir / "binance_spot" / "freqtrade_XRPETH" / "XRP_ETH-trades.ccxt.json"
    rows = [trade["info"] for trade in json.loads(path.read_text())]
    builder = parse_rest_agg_trades(rows, market_pb2.EXCHANGE_BINANCE_SPOT, "XRPETH", 1)
    run = builder.to_proto()
    assert len(run.trade_ids) == 12477
    assert list(run.trade_ids) == list(range(13519807, 13532284))
    # Trade ids 15373518..15388189 are contiguous, so the counts must cover all of them.
    assert sum(run.trade_counts) == 15388189 - 15373518 + 1
    assert prices(run)[0] == Decimal("0.00141342")
    assert run.event_time_ns[0] == 1570752011620 * 1_000_000
