"""Reading a batch's runs column by column gives the runs `TradeRun.from_proto` gives."""

from __future__ import annotations

import numpy as np
import pytest

from tickmesh.bars.run_columns import runs_from_messages
from tickmesh.bars.trades import TradeRun, TradeRunError
from tickmesh.v2 import market_pb2

FIELDS = ("trade_ids", "prices", "quantities", "event_time_ns", "types", "trade_counts", "sides")


def _messages(seed: int, count: int, longest: int) -> list[market_pb2.SymbolTrades]:
    rng = np.random.default_rng(seed)
    messages = []
    for index in range(count):
        size = int(rng.integers(0, longest + 1))
        message = market_pb2.SymbolTrades(
            exchange=market_pb2.EXCHANGE_BINANCE_USDM,
            symbol=f"R{index}USDT",
            trade_ids=rng.integers(1, 10**12, size).tolist(),
            prices=rng.integers(-5, 10**15, size).tolist(),
            quantities=rng.integers(-5, 10**9, size).tolist(),
            event_time_ns=rng.integers(1, 2**62, size).tolist(),
            price_scale=int(rng.integers(0, 19)),
            quantity_scale=int(rng.integers(0, 19)),
        )
        # Each optional column is present on some runs and absent (empty) on others.
        if rng.random() < 0.5:
            message.types.extend(rng.integers(0, 4, size).tolist())
        if rng.random() < 0.5:
            message.trade_counts.extend(rng.integers(1, 9, size).tolist())
        if rng.random() < 0.5:
            message.sides.extend(rng.integers(0, 3, size).tolist())
        messages.append(message)
    return messages


# Short runs are read as one list per column, long ones run by run, a single one directly.
@pytest.mark.parametrize(("count", "longest"), [(40, 4), (6, 300), (1, 300), (1, 0)])
@pytest.mark.parametrize("seed", range(3))
def test_every_run_equals_from_proto(seed: int, count: int, longest: int) -> None:
    messages = _messages(seed, count, longest)
    runs = runs_from_messages(messages)
    assert len(runs) == len(messages)
    for run, message in zip(runs, messages, strict=True):
        expected = TradeRun.from_proto(message)
        assert (run.exchange, run.symbol) == (expected.exchange, expected.symbol)
        assert (run.price_scale, run.quantity_scale) == (
            expected.price_scale,
            expected.quantity_scale,
        )
        for name in FIELDS:
            got, want = getattr(run, name), getattr(expected, name)
            if want is None or want.size == 0:
                assert got is None or got.size == 0, name
            else:
                assert got is not None, name
                assert got.dtype == want.dtype, name
                assert got.tolist() == want.tolist(), name


def test_a_column_that_does_not_line_up_is_named() -> None:
    good = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol="AUSDT",
        trade_ids=[1],
        prices=[1],
        quantities=[1],
        event_time_ns=[1],
    )
    bad = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
        symbol="BUSDT",
        trade_ids=[1, 2],
        prices=[1, 2],
        quantities=[1, 2],
        event_time_ns=[1, 2],
        sides=[market_pb2.AGGRESSOR_SIDE_BUY],
    )
    with pytest.raises(TradeRunError, match=r"batch.trades\[1\]: BUSDT: column sides has shape"):
        runs_from_messages([good, bad])
    bad.ClearField("sides")
    bad.price_scale = 19
    with pytest.raises(TradeRunError, match=r"batch.trades\[1\].price_scale: 19 is outside"):
        runs_from_messages([good, bad])


def test_an_event_time_not_positive_is_named_by_run_and_trade() -> None:
    def run(symbol: str, times: list[int]) -> market_pb2.SymbolTrades:
        return market_pb2.SymbolTrades(
            exchange=market_pb2.EXCHANGE_BINANCE_SPOT,
            symbol=symbol,
            trade_ids=range(1, len(times) + 1),
            prices=[1] * len(times),
            quantities=[1] * len(times),
            event_time_ns=times,
        )

    messages = [run("AUSDT", [5]), run("BUSDT", []), run("CUSDT", [5, 6, 0])]
    with pytest.raises(TradeRunError, match=r"^batch.trades\[2\].event_time_ns\[2\]: must be"):
        runs_from_messages(messages)
    messages[0].event_time_ns[0] = -1
    with pytest.raises(TradeRunError, match=r"^batch.trades\[0\].event_time_ns\[0\]: must be"):
        runs_from_messages(messages)
