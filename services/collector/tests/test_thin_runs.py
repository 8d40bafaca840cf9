"""Runs of one or two trades (a whole market's thin instruments) decode exactly like long ones.

Short runs are rescaled, normalised and checked for contiguity in plain Python, long ones
through numpy; both are held here against an independent reading of the wire text
(``decimal.Decimal``) and against each other on the same trades cut into different runs.
"""

from __future__ import annotations

import random
from decimal import Decimal

import numpy as np
from prometheus_client import CollectorRegistry

from tickmesh.collector.binance import BinanceStreamDecoder
from tickmesh.collector.binance.columns import SymbolTradesBuilder
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.binance.id_tracker import TradeIdTracker
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.simulator import Market, WholeMarket
from tickmesh.collector.simulator.frames import trade_payload
from tickmesh.collector.simulator.hub import combined_frame
from tickmesh.collector.simulator.whole_market import whole_market_events
from tickmesh.v2 import market_pb2

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
USDM = market_pb2.EXCHANGE_BINANCE_USDM
RECEIVED_NS = 1_723_161_600_000_000_000
# Either side of the length up to which runs take the plain-Python path (32).
LENGTHS = (1, 2, 3, 31, 32, 33, 64)


def _decimal_text(rng: random.Random) -> str:
    """A positive decimal as an exchange writes it: 0 to 8 decimals, trailing zeros or not."""
    decimals = rng.randrange(0, 9)
    # Small enough that any row rescaled to 8 decimals still fits int64.
    mantissa = rng.randrange(1, 10**7) * 10 ** rng.randrange(0, 4)
    if not decimals:
        return str(mantissa)
    digits = str(mantissa).rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}"


def _values(mantissas: object, scale: int) -> list[Decimal]:
    return [Decimal(int(m)).scaleb(-scale) for m in mantissas]  # type: ignore[attr-defined]


def _significant(text: str) -> int:
    exponent = Decimal(text).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def test_runs_of_every_length_are_exact_with_the_fewest_decimals() -> None:
    rng = random.Random(15)
    for length in LENGTHS:
        for _ in range(40):
            builder = SymbolTradesBuilder(SPOT, "W0000USDT")
            prices = [_decimal_text(rng) for _ in range(length)]
            quantities = [_decimal_text(rng) for _ in range(length)]
            for index, (price, quantity) in enumerate(zip(prices, quantities, strict=True)):
                builder.append(index, price, quantity, 1, RECEIVED_NS, RECEIVED_NS, 1, 1)
            run = builder.to_proto()
            assert _values(run.prices, run.price_scale) == [Decimal(p) for p in prices]
            assert _values(run.quantities, run.quantity_scale) == [Decimal(q) for q in quantities]
            assert run.price_scale == max(map(_significant, prices))
            assert run.quantity_scale == max(map(_significant, quantities))
            values, scale = builder.prices()
            assert (values.tolist(), scale) == (list(run.prices), run.price_scale)


def test_all_zero_column_normalises_to_scale_zero_at_any_length() -> None:
    # USD-M "NA" events carry p=0, q=0: a run of only them has scale 0, short or long.
    for length in LENGTHS:
        builder = SymbolTradesBuilder(USDM, "W0001USDT")
        for index in range(length):
            builder.append(index, "0.00", "0.000", 1, RECEIVED_NS, RECEIVED_NS, 4, 1, False)
        run = builder.to_proto()
        assert (list(run.prices), run.price_scale) == ([0] * length, 0)
        assert (list(run.quantities), run.quantity_scale) == ([0] * length, 0)


def _market_frames(trades: int) -> list[tuple[bytes, market_pb2.Exchange.ValueType]]:
    spec = WholeMarket(200, trades=trades)
    frames = []
    for event in whole_market_events(spec, seed=7, start_ms=1_723_161_600_000):
        assert event.trade is not None
        exchange = SPOT if event.market is Market.SPOT else USDM
        frames.append((combined_frame(event.stream, trade_payload(event.trade)).encode(), exchange))
    return frames


def _decoded(
    frames: list[tuple[bytes, market_pb2.Exchange.ValueType]], flush_every: int
) -> dict[tuple[int, str], list[tuple[int, Decimal, Decimal, int, int]]]:
    """Every trade by instrument (id, price, quantity, side, time), publishing every N frames."""
    decoders = {SPOT: BinanceStreamDecoder(SPOT), USDM: BinanceStreamDecoder(USDM)}
    book = GapBook(CollectorMetrics(CollectorRegistry()))
    trades: dict[tuple[int, str], list[tuple[int, Decimal, Decimal, int, int]]] = {}

    def publish() -> None:
        for decoder in decoders.values():
            for run in book.deliver_many(decoder.take()):
                rows = zip(
                    run.trade_ids,
                    _values(run.prices, run.price_scale),
                    _values(run.quantities, run.quantity_scale),
                    run.sides,
                    run.event_time_ns,
                    strict=True,
                )
                trades.setdefault((run.exchange, run.symbol), []).extend(rows)

    for count, (frame, exchange) in enumerate(frames, 1):
        assert decoders[exchange].feed(frame, RECEIVED_NS) is None
        if count % flush_every == 0:
            publish()
    publish()
    assert all(tracker.gaps == [] for tracker in book.trackers.values())
    return trades


def test_whole_market_thin_runs_equal_the_same_trades_in_long_runs() -> None:
    frames = _market_frames(6_000)
    thin = _decoded(frames, 20)  # mostly runs of one trade
    long = _decoded(frames, 6_000)  # one run per instrument
    assert thin == long
    assert sum(map(len, thin.values())) == len(frames)
    for rows in thin.values():
        ids = [row[0] for row in rows]
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_short_runs_through_the_tracker_match_numpy_input() -> None:
    # The gap book hands a run's repeated id field to the tracker; numpy input must agree.
    rng = random.Random(3)
    for length in LENGTHS:
        for _ in range(30):
            base = rng.randrange(100, 10_000)
            ids = sorted(rng.sample(range(base, base + length + rng.randrange(0, 3)), length))
            if rng.random() < 0.3:
                rng.shuffle(ids)
            plain, array = TradeIdTracker(), TradeIdTracker()
            for tracker in (plain, array):
                tracker.accept([base - 1])
            run = market_pb2.SymbolTrades(trade_ids=ids)
            keep_plain, gaps_plain = plain.accept(run.trade_ids)
            keep_array, gaps_array = array.accept(np.array(ids, dtype=np.int64))
            assert gaps_plain == gaps_array
            assert (keep_plain is None) == (keep_array is None)
            if keep_plain is not None and keep_array is not None:
                assert keep_plain.tolist() == keep_array.tolist()
            assert plain.high == array.high
            assert [(g.first, g.last) for g in plain.gaps] == [
                (g.first, g.last) for g in array.gaps
            ]
