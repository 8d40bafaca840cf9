"""Types, counts and sides of a trade run: stored only when a run needs them, same message.

A run of single market trades keeps no types or counts column and writes its sides and types
into the message as packed bytes; these tests hold every shape of run against a message
built field by field from plain lists by upb itself.
"""

from __future__ import annotations

import pytest

from tickmesh.collector.binance.columns import SymbolTradesBuilder
from tickmesh.v2 import market_pb2

USDM = market_pb2.EXCHANGE_BINANCE_USDM
MARKET = market_pb2.TRADE_TYPE_MARKET
OTHER = market_pb2.TRADE_TYPE_OTHER
ADL = market_pb2.TRADE_TYPE_ADL
BUY = market_pb2.AGGRESSOR_SIDE_BUY
SELL = market_pb2.AGGRESSOR_SIDE_SELL
RECEIVED_NS = 1_723_161_600_000_000_000

# (side, type, count) per row; prices, quantities and times follow from the row's index.
Row = tuple[int, int, int]


def _built(rows: list[Row]) -> SymbolTradesBuilder:
    builder = SymbolTradesBuilder(USDM, "BTCUSDT")
    for index, (side, kind, count) in enumerate(rows):
        market = kind == MARKET
        price, quantity = (f"6183{index}.5", f"0.0{index + 1}") if market else ("0", "0")
        builder.append(index, price, quantity, side, index, RECEIVED_NS, kind, count, market)
    return builder


def _expected(rows: list[Row], built: market_pb2.SymbolTrades) -> market_pb2.SymbolTrades:
    """The same run from lists: the decimal columns as built, types and counts from rows."""
    counts = [count for _, _, count in rows]
    return market_pb2.SymbolTrades(
        exchange=USDM,
        symbol="BTCUSDT",
        trade_ids=list(range(len(rows))),
        prices=list(built.prices),
        quantities=list(built.quantities),
        sides=[side for side, _, _ in rows],  # type: ignore[misc]
        event_time_ns=list(range(len(rows))),
        receive_time_ns=[RECEIVED_NS] * len(rows),
        types=[kind for _, kind, _ in rows],  # type: ignore[misc]
        trade_counts=counts if any(count != 1 for count in counts) else [],
        price_scale=built.price_scale,
        quantity_scale=built.quantity_scale,
    )


@pytest.mark.parametrize(
    "rows",
    [
        [(BUY, MARKET, 1), (SELL, MARKET, 1), (BUY, MARKET, 1)],
        [(BUY, MARKET, 1), (SELL, OTHER, 1), (BUY, MARKET, 1)],
        [(SELL, MARKET, 1), (BUY, MARKET, 1), (SELL, MARKET, 4), (BUY, MARKET, 1)],
        [(BUY, ADL, 2)],
        [(BUY, MARKET, 1)] * 40 + [(SELL, OTHER, 1)] + [(BUY, MARKET, 1)] * 40,
        # Values outside the enums (still one signed byte) take upb's own conversion.
        [(BUY, MARKET, 1), (-1, MARKET, 1), (127, 100, 1)],
        [(BUY, -3, 1), (SELL, MARKET, 1)],
    ],
)
def test_a_run_gives_the_message_upb_builds_from_lists(rows: list[Row]) -> None:
    run = _built(rows).to_proto()
    expected = _expected(rows, run)
    assert run == expected
    assert run.SerializeToString() == expected.SerializeToString()
    assert list(run.types) == [kind for _, kind, _ in rows]


def test_a_cleared_run_starts_without_stored_types() -> None:
    builder = _built([(BUY, OTHER, 3), (SELL, MARKET, 1)])
    builder.clear()
    builder.append(7, "1.5", "2", SELL, 7, RECEIVED_NS, MARKET, 1)
    run = builder.to_proto()
    assert (list(run.types), list(run.trade_counts), list(run.sides)) == ([MARKET], [], [SELL])


def test_an_empty_run_has_no_sides_or_types() -> None:
    run = SymbolTradesBuilder(USDM, "BTCUSDT").to_proto()
    assert (len(run.trade_ids), len(run.sides), len(run.types)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("kind", "count", "event_ns"),
    [
        (MARKET, 1, 2**63),  # a plain row whose time does not fit
        (MARKET, 2**32, 5),  # the first stored row's count does not fit
        (200, 1, 5),  # nor its type
    ],
)
@pytest.mark.parametrize("stored", [False, True])
def test_a_row_that_does_not_fit_leaves_the_rows_before_it(
    kind: int, count: int, event_ns: int, stored: bool
) -> None:
    first: Row = (BUY, OTHER, 1) if stored else (BUY, MARKET, 1)
    builder = _built([first, (SELL, MARKET, 1)])
    with pytest.raises(OverflowError):
        builder.append(9, "1.5", "2", SELL, event_ns, RECEIVED_NS, kind, count)
    assert len(builder) == 2
    builder.append(2, "61832.5", "0.03", BUY, 2, RECEIVED_NS, MARKET, 1)
    run = builder.to_proto()
    rows = [first, (SELL, MARKET, 1), (BUY, MARKET, 1)]
    assert run == _expected(rows, run)
