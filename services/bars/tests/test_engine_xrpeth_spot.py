"""Bars rebuilt from real XRPETH spot aggTrades against Binance's own 1m and 5m klines.

XRPETH trades thinly: 1,091 of its 3,560 minutes have no trade, and Binance prints them as flat
zero-volume klines at the previous close. The 5m klines open at the first real trade, so they
match only if roll-ups skip those flat 1m bars (fixtures README, section 1b).


Comparisons are exact: the Decimal of each served decimal string equals Decimal(repr(float))
of ccxt's kline value (and the float is the one the string parses to); no tolerance.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, TIMEFRAMES

from .kline_helpers import OhlcvKlines, bar_fields


@pytest.fixture(scope="module")
def xrpeth_finals(xrpeth_trades: TradeRun) -> dict[str, dict[int, BarUpdate]]:
    """Final bars of the whole replay in runs of 300, by timeframe label and open time.

    The clock then moves past the end of the last UTC day, so every timeframe is final.
    """
    engine = BarEngine()
    updates: list[BarUpdate] = []
    size = len(xrpeth_trades)
    for start in range(0, size, 300):
        part = xrpeth_trades.take(np.arange(start, min(start + 300, size)))
        updates += engine.apply_trades(part).updates
    last_day = TIMEFRAMES[-1].bucket(int(xrpeth_trades.event_time_ns.max()))
    updates += engine.advance(last_day + TIMEFRAMES[-1].duration_ns + NS_PER_MINUTE)
    finals: dict[str, dict[int, BarUpdate]] = {}
    for update in updates:
        assert update.final
        assert update.revision == 0
        finals.setdefault(update.timeframe.label, {})[update.open_time_ns] = update
    return finals


def equal_ohlcv(bar: BarUpdate, kline: tuple[Decimal, Decimal, Decimal, Decimal, Decimal]) -> bool:
    """Tell whether a bar equals an OHLCV kline exactly (served strings against the floats)."""
    served = bar_fields(bar)
    values = tuple(served[name] for name in ("open", "high", "low", "close", "volume"))
    message = bar.to_proto()
    texts = (message.open, message.high, message.low, message.close, message.volume)
    return values == kline and all(float(t) == float(k) for t, k in zip(texts, kline, strict=True))


def test_xrpeth_minute_bars_equal_every_minute_kline_including_flats(
    xrpeth_finals: dict[str, dict[int, BarUpdate]], xrpeth_klines: dict[str, OhlcvKlines]
) -> None:
    klines = xrpeth_klines["1m"]
    bars = xrpeth_finals["1m"]
    mismatched = [t for t, kline in klines.items() if not equal_ohlcv(bars[t], kline)]
    assert mismatched == []
    flats = [bar for t, bar in bars.items() if t in klines and bar.trade_count == 0]
    assert len(flats) == 1091
    assert all(
        bar.to_proto().volume == "0" and bar.vwap == float(bar.to_proto().close) for bar in flats
    )


def test_xrpeth_five_minute_bars_equal_every_kline_skipping_flat_minutes(
    xrpeth_finals: dict[str, dict[int, BarUpdate]], xrpeth_klines: dict[str, OhlcvKlines]
) -> None:
    klines = xrpeth_klines["5m"]
    bars = xrpeth_finals["5m"]
    mismatched = [t for t, kline in klines.items() if not equal_ohlcv(bars[t], kline)]
    assert mismatched == []
    assert len(klines) == 712
    assert sum(1 for t in klines if bars[t].trade_count > 0) == 706


def test_xrpeth_minute_trade_counts_sum_aggregated_trades(
    xrpeth_finals: dict[str, dict[int, BarUpdate]], xrpeth_trades: TradeRun
) -> None:
    # Trade ids 15373518..15388189 are contiguous across the aggTrades: l - f + 1 each.
    total = sum(bar.trade_count for bar in xrpeth_finals["1m"].values())
    assert total == 15_388_189 - 15_373_518 + 1
    assert total > len(xrpeth_trades)


def test_xrpeth_higher_timeframes_roll_up_the_same_trades(
    xrpeth_finals: dict[str, dict[int, BarUpdate]],
) -> None:
    minutes = [bar for bar in xrpeth_finals["1m"].values() if bar.trade_count > 0]
    for label in ("5m", "15m", "1h", "4h", "1d"):
        bars = list(xrpeth_finals[label].values())
        assert sum(bar.trade_count for bar in bars) == sum(bar.trade_count for bar in minutes)
        for name in ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume"):
            total = sum(bar_fields(bar)[name] for bar in bars)
            assert total == sum(bar_fields(bar)[name] for bar in minutes), (label, name)
    daily = xrpeth_finals["1d"]
    day = min(daily)
    first_minute = min(bar.open_time_ns for bar in minutes)
    assert daily[day].open == xrpeth_finals["1m"][first_minute].open
