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
from tickmesh.v1 import analytics_pb2, market_pb2

MINUTE_NS = 60 * 1_000_000_000


def _bars() -> list[market_pb2.Bar]:
    return [
        market_pb2.Bar(
            symbol="BTCUSDT",
            timeframe=market_pb2.TIMEFRAME_5M,
            # A time with microseconds and one without: both ISO forms must match.
            open_time_ns=1_700_000_000 * 1_000_000_000 + index * MINUTE_NS + index * 123_456_789,
            open=0.1 + index,
            high=1e-7 * (index + 1),
            low=1e20,
            close=42.0,
            volume=0.0,
            quote_volume=3.3,
            trade_count=index,
            vwap=1.5,
            final=index % 2 == 0,
            revision=index,
        )
        for index in range(3)
    ]


def test_chart_json_equals_the_chart_schema() -> None:
    bars = _bars()
    rows = [
        analytics_pb2.Indicators(open_time_ns=bars[0].open_time_ns, rsi=55.5, sma_20=1.25),
        analytics_pb2.Indicators(open_time_ns=bars[1].open_time_ns),
    ]
    expected = ChartOut(
        symbol="BTCUSDT",
        timeframe="5m",
        bars=[bar_out(bar) for bar in bars],
        indicators=[indicators_out(row) for row in rows],
        warnings=["note"],
    ).model_dump_json()
    got = chart_json("BTCUSDT", "5m", bars_json(bars), indicators_json(rows), ["note"])
    assert json.loads(got) == json.loads(expected)
    without = chart_json("BTCUSDT", "5m", bars_json([]), None, [])
    assert json.loads(without) == json.loads(
        ChartOut(symbol="BTCUSDT", timeframe="5m", bars=[], indicators=None).model_dump_json()
    )


def test_push_message_carries_each_bar_with_symbol_and_timeframe() -> None:
    bars = _bars()
    encoder = PushEncoder()
    message = json.loads(encoder.bars_message("BTCUSDT", "5m", bars))
    assert message["type"] == "bars"
    assert (message["symbol"], message["timeframe"]) == ("BTCUSDT", "5m")
    assert message["bars"] == [
        bar_out(bar).model_dump(mode="json") | {"symbol": "BTCUSDT", "timeframe": "5m"}
        for bar in bars
    ]
    # Clients in step share one encoded message; a changed bar list gets its own.
    assert encoder.bars_message("BTCUSDT", "5m", bars) is encoder.bars_message(
        "BTCUSDT", "5m", bars
    )
    assert (
        json.loads(encoder.bars_message("BTCUSDT", "5m", bars[:1]))["bars"] == message["bars"][:1]
    )
