"""The bar hub hands each per-instrument subscription only its instrument's bars, in order."""

from __future__ import annotations

from tickmesh.bars.subscriptions import BarFilter, BarHub
from tickmesh.v2 import market_pb2

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
M1 = market_pb2.TIMEFRAME_1M
M5 = market_pb2.TIMEFRAME_5M


def _bar(exchange: int, symbol: str, timeframe: int, change_id: int, final: bool) -> market_pb2.Bar:
    return market_pb2.Bar(
        exchange=exchange,  # type: ignore[arg-type]
        symbol=symbol,
        timeframe=timeframe,  # type: ignore[arg-type]
        change_id=change_id,
        final=final,
    )


def _ids(bars: list[market_pb2.Bar]) -> list[tuple[str, int]]:
    return [(bar.symbol, bar.change_id) for bar in bars]


async def test_finals_and_forming_reach_only_the_instruments_subscribers() -> None:
    hub = BarHub(100)
    # A gateway's per-instrument streams of a whole market, one every-instrument stream (the
    # analytics service) and one stream of one instrument's 5m bars.
    per_instrument = {
        (exchange, f"W{index:04d}USDT"): hub.subscribe(
            BarFilter(frozenset({(exchange, f"W{index:04d}USDT")}), frozenset(), True)
        )
        for index in range(2000)
        for exchange in (SPOT if index % 2 == 0 else USDM,)
    }
    everything = hub.subscribe(BarFilter())
    five_minutes = hub.subscribe(BarFilter(frozenset({(SPOT, "W0000USDT")}), frozenset({M5})))
    finals = [
        _bar(SPOT, "W0000USDT", M1, 1, True),
        _bar(USDM, "W0001USDT", M1, 2, True),
        _bar(SPOT, "W0000USDT", M5, 3, True),
        _bar(SPOT, "W0001USDT", M1, 4, True),  # no such instrument on spot: nobody's but all
        _bar(SPOT, "W0000USDT", M1, 5, True),
    ]
    hub.publish_finals(finals)
    hub.publish_forming([_bar(USDM, "W1999USDT", M1, 0, False)])
    assert _ids(await per_instrument[(SPOT, "W0000USDT")].next_items()) == [
        ("W0000USDT", 1),
        ("W0000USDT", 3),
        ("W0000USDT", 5),
    ]
    assert _ids(await per_instrument[(USDM, "W0001USDT")].next_items()) == [("W0001USDT", 2)]
    assert _ids(await per_instrument[(USDM, "W1999USDT")].next_items()) == [("W1999USDT", 0)]
    assert not per_instrument[(SPOT, "W0002USDT")].queued
    assert not per_instrument[(SPOT, "W0002USDT")].has_extra()
    # The unfiltered stream gets every final; it did not ask for forming bars.
    assert _ids(await everything.next_items()) == _ids(finals)
    assert _ids(await five_minutes.next_items()) == [("W0000USDT", 3)]
    hub.unsubscribe(per_instrument[(SPOT, "W0000USDT")])
    hub.publish_finals([_bar(SPOT, "W0000USDT", M1, 6, True)])
    assert not per_instrument[(SPOT, "W0000USDT")].queued
    assert hub.subscriber_count == 2001


def test_forming_is_wanted_only_for_the_instruments_of_forming_subscribers() -> None:
    hub = BarHub(100)
    assert hub.forming_wanted() is not None
    assert (SPOT, "BTCUSDT") not in hub.forming_wanted()  # type: ignore[operator]
    # Analytics: every instrument, finals only. It wants no forming bar.
    hub.subscribe(BarFilter())
    hub.subscribe(BarFilter(frozenset({(USDM, "ETHUSDT")})))
    wanted = hub.forming_wanted()
    assert wanted is not None
    assert (SPOT, "BTCUSDT") not in wanted
    assert (USDM, "ETHUSDT") not in wanted
    # A gateway's stream of the instruments its clients watch.
    gateway = hub.subscribe(
        BarFilter(frozenset({(SPOT, "BTCUSDT"), (USDM, "ETHUSDT")}), include_forming=True)
    )
    wanted = hub.forming_wanted()
    assert wanted is not None
    assert {(SPOT, "BTCUSDT"), (USDM, "ETHUSDT")} == {
        key for key in [(SPOT, "BTCUSDT"), (USDM, "ETHUSDT"), (SPOT, "ETHUSDT")] if key in wanted
    }
    every = hub.subscribe(BarFilter(include_forming=True))
    assert hub.forming_wanted() is None  # every instrument
    hub.unsubscribe(every)
    hub.unsubscribe(gateway)
    wanted = hub.forming_wanted()
    assert wanted is not None
    assert (SPOT, "BTCUSDT") not in wanted


async def test_forming_bars_are_not_routed_to_finals_only_subscribers() -> None:
    hub = BarHub(100)
    finals_only = hub.subscribe(BarFilter(frozenset({(SPOT, "BTCUSDT")})))
    forming = hub.subscribe(BarFilter(frozenset({(SPOT, "BTCUSDT")}), include_forming=True))
    hub.publish_forming([_bar(SPOT, "BTCUSDT", M1, 0, False)])
    assert _ids(await forming.next_items()) == [("BTCUSDT", 0)]
    assert not finals_only.queued
    assert not finals_only.has_extra()
