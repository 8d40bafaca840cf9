"""Forming bars: at most one per instrument and timeframe per interval, the first at once."""

from __future__ import annotations

from tickmesh.bars.forming_throttle import FormingThrottle, proto_key
from tickmesh.v2 import market_pb2

MS = 1_000_000


def _bar(
    close: str,
    open_time_ns: int = 0,
    symbol: str = "BTCUSDT",
    exchange: int = market_pb2.EXCHANGE_BINANCE_USDM,
) -> market_pb2.Bar:
    return market_pb2.Bar(
        exchange=market_pb2.Exchange.ValueType(exchange),
        symbol=symbol,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=open_time_ns,
        close=close,
    )


def test_first_change_is_due_at_once_then_coalesced_until_interval_ends() -> None:
    throttle = FormingThrottle[market_pb2.Bar](250 * MS, proto_key)
    throttle.offer([_bar("1")])
    assert [b.close for b in throttle.due(1000 * MS)] == ["1"]
    throttle.offer([_bar("2")])
    throttle.offer([_bar("3")])
    assert throttle.due(1100 * MS) == []
    assert [b.close for b in throttle.due(1250 * MS)] == ["3"]
    assert throttle.due(1600 * MS) == []


def test_keys_are_throttled_independently() -> None:
    throttle = FormingThrottle[market_pb2.Bar](250 * MS, proto_key)
    spot = market_pb2.EXCHANGE_BINANCE_SPOT
    throttle.offer([_bar("1"), _bar("5", symbol="ETHUSDT"), _bar("2", exchange=spot)])
    assert {(b.exchange, b.symbol) for b in throttle.due(0)} == {
        (market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT"),
        (market_pb2.EXCHANGE_BINANCE_USDM, "ETHUSDT"),
        (spot, "BTCUSDT"),
    }


def test_final_bar_drops_its_pending_forming_version_only() -> None:
    throttle = FormingThrottle[market_pb2.Bar](250 * MS, proto_key)
    throttle.offer([_bar("1")])
    throttle.due(0)
    throttle.offer([_bar("2", open_time_ns=0)])
    throttle.forget_final([_bar("2", open_time_ns=0)])
    assert throttle.due(500 * MS) == []
    throttle.offer([_bar("7", open_time_ns=60_000 * MS)])
    throttle.forget_final([_bar("2", open_time_ns=0)])
    assert [b.close for b in throttle.due(1000 * MS)] == ["7"]


def test_an_item_made_into_nothing_is_dropped_and_leaves_its_key_free() -> None:
    throttle = FormingThrottle[market_pb2.Bar](250 * MS, proto_key)
    throttle.offer([_bar("1"), _bar("5", symbol="ETHUSDT")])
    # BTCUSDT's bar became final before it was sent: nothing goes out for it.
    made = throttle.make_due(0, lambda bar: None if bar.symbol == "BTCUSDT" else bar.close)
    assert made == ["5"]
    throttle.offer([_bar("2", open_time_ns=60_000 * MS), _bar("6", symbol="ETHUSDT")])
    # BTCUSDT's next bar goes out at once; ETHUSDT waits for the end of its interval.
    assert [b.close for b in throttle.due(10 * MS)] == ["2"]
    assert [b.close for b in throttle.due(250 * MS)] == ["6"]
