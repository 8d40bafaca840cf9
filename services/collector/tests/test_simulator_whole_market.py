"""The simulator's whole-market source: many instruments on both venues, skewed, with bursts."""

from __future__ import annotations

from collections import Counter

import pytest

from tickmesh.collector.simulator import Market, SimulatorConfig, WholeMarket, parse_args
from tickmesh.collector.simulator.sources import open_sources
from tickmesh.collector.simulator.whole_market import (
    in_burst,
    instrument_count,
    trade_shares,
    whole_market_events,
)


def test_whole_market_trades_skewed_over_both_venues() -> None:
    spec = WholeMarket(200, rate=1_000.0, burst_s=0.0, trades=20_000)
    trades = [event.trade for event in whole_market_events(spec, seed=3, start_ms=0)]
    per_symbol = Counter(trade.symbol for trade in trades if trade is not None)
    assert len(per_symbol) > 150
    busiest, share = per_symbol.most_common(1)[0]
    assert busiest == "W0000USDT"
    assert share / len(trades) == pytest.approx(trade_shares(spec)[0], rel=0.1)
    assert {trade.market for trade in trades if trade is not None} == {Market.SPOT, Market.USDM}
    # 20,000 trades at 1,000/s span 20 s of exchange time, in order.
    times = [trade.time_ms for trade in trades if trade is not None]
    assert times == sorted(times)
    assert 19_900 <= times[-1] <= 20_000


def test_whole_market_trade_ids_contiguous_per_instrument() -> None:
    spec = WholeMarket(50, trades=5_000)
    ids: dict[str, list[int]] = {}
    for event in whole_market_events(spec, seed=1, start_ms=0):
        assert event.trade is not None
        ids.setdefault(event.trade.symbol, []).append(event.trade.trade_id)
    for trade_ids in ids.values():
        assert trade_ids == list(range(trade_ids[0], trade_ids[0] + len(trade_ids)))


def test_whole_market_burst_runs_at_burst_rate() -> None:
    spec = WholeMarket(10, rate=100.0, burst_rate=1_000.0, burst_s=1.0, burst_every_s=3.0)
    assert [in_burst(spec, elapsed) for elapsed in (1.5, 2.5, 3.1)] == [False, True, False]
    limited = WholeMarket(10, 100.0, 1_000.0, 1.0, 3.0, trades=2_000)
    seconds = Counter(
        event.at_ns // 1_000_000_000 for event in whole_market_events(limited, seed=0, start_ms=0)
    )
    assert seconds[0] == pytest.approx(100, abs=15)
    assert seconds[2] == pytest.approx(1_000, abs=150)


def test_whole_market_listed_on_their_venues_without_random_walk() -> None:
    config = SimulatorConfig(whole_market=WholeMarket(6, trades=10))
    assert not config.uses_random_walk()
    events, listed = open_sources(config, now_ms=0)
    assert listed[Market.SPOT] == {"W0000USDT", "W0002USDT", "W0004USDT"}
    assert listed[Market.USDM] == {"W0001USDT", "W0003USDT", "W0005USDT"}
    assert sum(1 for _ in events) == 10


def test_simulator_parse_args_symbols_number_is_whole_market() -> None:
    config = parse_args(["--symbols", "2000", "--total-rate", "500"])
    assert config.whole_market == WholeMarket(2000, rate=500.0)
    assert config.symbols == []
    assert instrument_count("BTCUSDT") is None
    with pytest.raises(ValueError, match="at least one"):
        instrument_count("0")
