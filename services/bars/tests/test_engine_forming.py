"""Forming bars streamed as they change, and the conversion of bar updates to the proto Bar."""

from __future__ import annotations

from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND, TIMEFRAMES
from tickmesh.v2 import market_pb2

from .kline_helpers import decimal_run

DAY = TIMEFRAMES[-1].duration_ns
T0 = 1_700_000_000 * NS_PER_SECOND - (1_700_000_000 * NS_PER_SECOND) % DAY
SPOT = market_pb2.EXCHANGE_BINANCE_SPOT


def trade(
    trade_id: int, price: str, time_ns: int, symbol: str = "ETHUSDT", side: int = 0
) -> TradeRun:
    """Return a run of one spot trade of quantity 1 (aggressor side unknown unless given)."""
    sides = None if side == 0 else [side]
    return decimal_run(SPOT, symbol, [trade_id], [price], ["1"], [time_ns], sides=sides)


def test_forming_updates_cover_every_timeframe_then_only_changes() -> None:
    engine = BarEngine()
    engine.apply_trades(trade(1, "10", T0 + NS_PER_SECOND))
    first = engine.take_forming_updates()
    assert [u.timeframe.label for u in first] == [tf.label for tf in TIMEFRAMES]
    assert all(not u.final and u.revision == 0 and u.open_time_ns == T0 for u in first)
    assert engine.take_forming_updates() == []

    engine.apply_trades(trade(2, "12", T0 + 2 * NS_PER_SECOND, symbol="BTCUSDT"))
    engine.apply_trades(trade(3, "11", T0 + 3 * NS_PER_SECOND))
    changed = engine.take_forming_updates()
    assert {(u.symbol, u.timeframe.label) for u in changed} == {
        (symbol, tf.label) for symbol in ("BTCUSDT", "ETHUSDT") for tf in TIMEFRAMES
    }
    eth_minute = next(u for u in changed if u.symbol == "ETHUSDT" and u.timeframe.label == "1m")
    assert (eth_minute.open, eth_minute.high, eth_minute.close, eth_minute.trade_count) == (
        10,
        11,
        11,
        2,
    )


def test_forming_updates_skip_bars_that_became_final() -> None:
    engine = BarEngine()
    engine.apply_trades(trade(1, "10", T0 + NS_PER_SECOND))
    finals = engine.apply_trades(trade(2, "10.5", T0 + NS_PER_MINUTE + 3 * NS_PER_SECOND)).updates
    assert [(u.timeframe.label, u.final) for u in finals] == [("1m", True)]
    forming = engine.take_forming_updates()
    assert [(u.timeframe.label, u.open_time_ns) for u in forming] == [
        ("1m", T0 + NS_PER_MINUTE)
    ] + [(tf.label, T0) for tf in TIMEFRAMES[1:]]


def test_bar_update_to_proto_carries_every_field() -> None:
    engine = BarEngine()
    engine.apply_trades(trade(1, "10.25", T0 + NS_PER_SECOND, side=market_pb2.AGGRESSOR_SIDE_BUY))
    engine.apply_trades(trade(2, "14", T0 + 2 * NS_PER_SECOND, side=market_pb2.AGGRESSOR_SIDE_SELL))
    (final,) = [u for u in engine.advance(T0 + NS_PER_MINUTE + 2 * NS_PER_SECOND)]

    bar = final.to_proto(change_id=42)

    assert bar == market_pb2.Bar(
        symbol="ETHUSDT",
        exchange=SPOT,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=T0,
        open="10.25",
        high="14",
        low="10.25",
        close="14",
        volume="2",
        quote_volume="24.25",
        trade_count=2,
        vwap=12.125,
        final=True,
        revision=0,
        change_id=42,
        taker_buy_volume="1",
        taker_buy_quote_volume="10.25",
    )
    assert final.close_time_ns == T0 + NS_PER_MINUTE


def test_forming_message_is_the_forming_update_as_proto() -> None:
    engine = BarEngine()
    engine.apply_trades(trade(1, "10.25", T0 + NS_PER_SECOND, side=market_pb2.AGGRESSOR_SIDE_BUY))
    engine.apply_trades(trade(2, "9.5", T0 + 2 * NS_PER_SECOND, symbol="BTCUSDT"))
    engine.apply_trades(trade(2, "9.5", T0 + 2 * NS_PER_SECOND, symbol="BTCUSDT"))  # duplicate
    engine.apply_trades(trade(3, "14", T0 + 3 * NS_PER_SECOND, side=market_pb2.AGGRESSOR_SIDE_SELL))
    forming = engine.take_forming()
    assert len(forming) == 2 * len(TIMEFRAMES)
    for bar in forming:
        update = bar.update()
        assert update is not None
        assert bar.message() == update.to_proto()
    messages = [message for bar in forming if (message := bar.message()) is not None]
    assert {m.vwap for m in messages if m.symbol == "ETHUSDT"} == {12.125}
    assert {m.duplicate_trades for m in messages if m.symbol == "BTCUSDT"} == {1}
    assert not any(m.HasField("taker_buy_volume") for m in messages if m.symbol == "BTCUSDT")

    engine.advance(T0 + NS_PER_MINUTE + 2 * NS_PER_SECOND)
    minute = next(bar for bar in forming if bar.key()[2] == market_pb2.TIMEFRAME_1M)
    assert minute.message() is None  # final now


def test_take_forming_names_only_wanted_instruments_and_forgets_the_others() -> None:
    engine = BarEngine()
    engine.apply_trades(trade(1, "10", T0 + NS_PER_SECOND))
    engine.apply_trades(trade(2, "12", T0 + NS_PER_SECOND, symbol="BTCUSDT"))
    wanted = {(SPOT, "BTCUSDT")}
    assert {bar.key()[1] for bar in engine.take_forming(wanted)} == {"BTCUSDT"}
    # ETHUSDT's changes were forgotten, not held for later: only its next change is named.
    assert engine.take_forming() == []
    engine.apply_trades(trade(3, "11", T0 + 2 * NS_PER_SECOND))
    named = engine.take_forming(set())
    assert named == []
    engine.apply_trades(trade(4, "13", T0 + 3 * NS_PER_SECOND))
    assert {(bar.key()[1], bar.key()[2]) for bar in engine.take_forming()} == {
        ("ETHUSDT", tf.proto) for tf in TIMEFRAMES
    }
