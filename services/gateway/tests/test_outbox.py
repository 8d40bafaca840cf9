"""The per-connection outbox: forming bars coalesce, finals are never dropped, one push per
interval, except a bar's first final version, which goes at once."""

from __future__ import annotations

from tickmesh.gateway.outbox import Outbox
from tickmesh.v2 import market_pb2

MINUTE = 60 * 1_000_000_000


def _bar(minute: int, close: float, final: bool, revision: int = 0) -> market_pb2.Bar:
    return market_pb2.Bar(
        symbol="BTCUSDT",
        exchange=market_pb2.EXCHANGE_BINANCE_USDM,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=minute * MINUTE,
        close=f"{close:g}",
        final=final,
        revision=revision,
    )


def test_outbox_coalesces_forming_bars_to_latest() -> None:
    outbox = Outbox(interval_seconds=1.0)
    outbox.subscribe("1m")
    for close in (1.0, 2.0, 3.0):
        outbox.offer(_bar(5, close, final=False))
    [(label, bars)] = outbox.due(now=100.0)
    assert label == "1m"
    assert [bar.close for bar in bars] == ["3"]


def test_outbox_keeps_every_final_and_drops_superseded_forming() -> None:
    outbox = Outbox(interval_seconds=1.0)
    outbox.subscribe("1m")
    outbox.offer(_bar(5, 1.0, final=False))
    outbox.offer(_bar(5, 1.5, final=True))
    outbox.offer(_bar(6, 2.0, final=True))
    outbox.offer(_bar(7, 2.5, final=False))
    [(_, bars)] = outbox.due(now=100.0)
    assert [(bar.open_time_ns // MINUTE, bar.final) for bar in bars] == [
        (5, True),
        (6, True),
        (7, False),
    ]


def test_outbox_pushes_each_timeframe_at_most_once_per_interval() -> None:
    outbox = Outbox(interval_seconds=1.0)
    outbox.subscribe("1m")
    outbox.offer(_bar(5, 1.0, final=False))
    assert len(outbox.due(now=100.0)) == 1
    assert outbox.offer(_bar(5, 1.1, final=False)) == 101.0
    assert outbox.due(now=100.5) == []
    # A revision keeps the schedule too: it corrects a bar the client already has.
    outbox.offer(_bar(4, 1.2, final=True, revision=1))
    assert outbox.next_due() == 101.0
    assert outbox.due(now=100.5) == []
    [(_, bars)] = outbox.due(now=101.0)
    assert [(bar.open_time_ns // MINUTE, bar.final) for bar in bars] == [(4, True), (5, False)]


def test_outbox_pushes_a_first_final_at_once_then_keeps_the_interval() -> None:
    outbox = Outbox(interval_seconds=1.0)
    outbox.subscribe("1m")
    outbox.offer(_bar(6, 2.0, final=False))
    assert len(outbox.due(now=100.0)) == 1
    # The minute closes 0.3 s after that push: its final goes now, not at 101.0.
    assert outbox.offer(_bar(5, 1.5, final=True)) == float("-inf")
    assert outbox.offer(_bar(6, 2.1, final=False)) == float("-inf")
    assert outbox.next_due() == float("-inf")
    [(_, bars)] = outbox.due(now=100.3)
    assert [(bar.open_time_ns // MINUTE, bar.final) for bar in bars] == [(5, True), (6, False)]
    # The next forming bar waits a whole interval after that push.
    assert outbox.offer(_bar(6, 2.2, final=False)) == 101.3
    assert outbox.due(now=101.0) == []
    [(_, bars)] = outbox.due(now=101.3)
    assert [bar.close for bar in bars] == ["2.2"]


def test_outbox_revision_replaces_pending_version_of_same_bar() -> None:
    outbox = Outbox(interval_seconds=1.0)
    outbox.subscribe("1m")
    outbox.offer(_bar(5, 1.0, final=True))
    outbox.offer(_bar(5, 1.2, final=True, revision=1))
    [(_, bars)] = outbox.due(now=100.0)
    assert [(bar.close, bar.revision) for bar in bars] == [("1.2", 1)]


def test_outbox_ignores_unsubscribed_timeframes() -> None:
    outbox = Outbox(interval_seconds=1.0)
    outbox.offer(_bar(1, 1.0, final=True))
    assert outbox.due(now=100.0) == []
    outbox.subscribe("1m")
    for minute in range(3):
        outbox.offer(_bar(minute, 1.0, final=True))
    [(label, bars)] = outbox.due(now=100.0)
    assert (label, [bar.open_time_ns for bar in bars]) == ("1m", [m * MINUTE for m in range(3)])
