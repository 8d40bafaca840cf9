"""The msgspec encodings send exactly what the pydantic schemas document."""

from __future__ import annotations

import json

from tickmesh.gateway.bar_json import (
    PushEncoder,
    bars_json,
    chart_json,
    indicators_json,
)
from tickmesh.gateway.market_views import bar_out, indicators_out
from tickmesh.gateway.schemas import ChartOut
from tickmesh.v2 import analytics_pb2, market_pb2

MINUTE_NS = 60 * 1_000_000_000


def _bars() -> list[market_pb2.Bar]:
    bars = [
        market_pb2.Bar(
            symbol="BTCUSDT",
            exchange=market_pb2.EXCHANGE_BINANCE_USDM,
            timeframe=market_pb2.TIMEFRAME_5M,
            # A time with microseconds and one without: both ISO forms must match.
            open_time_ns=1_700_000_000 * 1_000_000_000 + index * MINUTE_NS + index * 123_456_789,
            # Exact decimal strings, including ones a float would print differently.
            open=f"0.{index}1",
            high="0.0000001",
            low="100000000000000000000",
            close="61700.8",
            volume="203.143",
            quote_volume="12534567.1234567891",
            trade_count=index,
            vwap=1.5,
            final=index % 2 == 0,
            revision=index,
        )
        for index in range(3)
    ]
    for bar in bars[1:]:  # taker-buy volumes are unknown (unset) on the first bar
        bar.taker_buy_volume = "0.1"
        bar.taker_buy_quote_volume = "0"
    return bars


def test_bar_values_are_the_exact_strings_and_unset_taker_buy_is_null() -> None:
    bars = json.loads(bars_json(_bars()))
    assert [bar["volume"] for bar in bars] == ["203.143"] * 3
    assert bars[0]["quote_volume"] == "12534567.1234567891"
    assert bars[0]["low"] == "100000000000000000000"
    assert (bars[0]["taker_buy_volume"], bars[0]["taker_buy_quote_volume"]) == (None, None)
    assert (bars[1]["taker_buy_volume"], bars[1]["taker_buy_quote_volume"]) == ("0.1", "0")
    assert bars[0]["vwap"] == 1.5  # a statistic: a number


def test_chart_json_equals_the_chart_schema() -> None:
    bars = _bars()
    rows = [
        analytics_pb2.Indicators(open_time_ns=bars[0].open_time_ns, rsi=55.5, sma_20=1.25),
        analytics_pb2.Indicators(open_time_ns=bars[1].open_time_ns),
    ]
    expected = ChartOut(
        instrument="binance_usdm:BTCUSDT",
        timeframe="5m",
        bars=[bar_out(bar) for bar in bars],
        indicators=[indicators_out(row) for row in rows],
        warnings=["note"],
    ).model_dump_json()
    text = "binance_usdm:BTCUSDT"
    got = chart_json(text, "5m", bars_json(bars), indicators_json(rows), ["note"])
    assert json.loads(got) == json.loads(expected)
    without = chart_json(text, "5m", bars_json([]), None, [])
    assert json.loads(without) == json.loads(
        ChartOut(instrument=text, timeframe="5m", bars=[], indicators=None).model_dump_json()
    )


def test_push_message_carries_each_bar_with_instrument_and_timeframe() -> None:
    bars = _bars()
    encoder = PushEncoder()
    text = "binance_usdm:BTCUSDT"
    message = json.loads(encoder.bars_message(text, "5m", bars))
    assert message["type"] == "bars"
    assert (message["instrument"], message["timeframe"]) == (text, "5m")
    assert message["bars"] == [
        bar_out(bar).model_dump(mode="json") | {"instrument": text, "timeframe": "5m"}
        for bar in bars
    ]
    # Clients in step share one encoded message; a changed bar list gets its own.
    assert encoder.bars_message(text, "5m", bars) is encoder.bars_message(text, "5m", bars)
    assert json.loads(encoder.bars_message(text, "5m", bars[:1]))["bars"] == message["bars"][:1]
