"""The garbage collector's pause over a whole market's day of retained bars.

A real `BarEngine` is filled with a day of 1m trades (one a minute, the thinnest market that
keeps every bar) for TICKMESH_BENCH_GC_INSTRUMENTS instruments (2,000) over
TICKMESH_BENCH_GC_MINUTES minutes (1,560: the 26 h revision window), so it holds every
timeframe's bars as the bar service would. Then it times:
- a full collection with every bar tracked, what CPython runs now and then on its own;
- a full collection after `freeze_survivors()`, what the bar service runs from then on;
- the bar service's periodic freeze after another minute of trades at 1,000 trades/s.
Each pause stops the event loop, and with it every stream of the service, for its length.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.long_lived import freeze_survivors
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v2 import market_pb2

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.report import Figure

INSTRUMENTS = int(os.environ.get("TICKMESH_BENCH_GC_INSTRUMENTS", "2000"))
MINUTES = int(os.environ.get("TICKMESH_BENCH_GC_MINUTES", "1560"))
TRADES_PER_SECOND = 1_000
_START_NS = 1_722_470_400 * NS_PER_SECOND  # 2024-08-01 00:00 UTC


def _run(instrument: int, times: np.ndarray, first_id: int) -> TradeRun:
    """Trades of one instrument at `times`, prices wandering by a few ticks."""
    size = len(times)
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_USDM,
        f"SYM{instrument}USDT",
        np.arange(first_id, first_id + size, dtype=np.int64),
        300_000 + np.arange(size, dtype=np.int64) % 7,
        np.full(size, 5, dtype=np.int64),
        times,
        sides=np.ones(size, dtype=np.int8),
        price_scale=1,
        quantity_scale=3,
    )


def _fill_day(engine: BarEngine) -> int:
    """One trade a minute for every instrument over MINUTES; the clock just past the end."""
    times = _START_NS + NS_PER_MINUTE * np.arange(MINUTES, dtype=np.int64) + NS_PER_SECOND
    for instrument in range(INSTRUMENTS):
        engine.apply_trades(_run(instrument, times, 1))
    now_ns = _START_NS + MINUTES * NS_PER_MINUTE + NS_PER_SECOND
    engine.advance(now_ns)
    return now_ns


def _one_more_minute(engine: BarEngine, now_ns: int) -> None:
    """A minute at TRADES_PER_SECOND spread over every instrument, then its close."""
    per_instrument = max(1, TRADES_PER_SECOND * 60 // INSTRUMENTS)
    offsets = np.linspace(0, NS_PER_MINUTE - NS_PER_SECOND, per_instrument).astype(np.int64)
    for instrument in range(INSTRUMENTS):
        engine.apply_trades(_run(instrument, now_ns + offsets, MINUTES + 1))
    engine.advance(now_ns + NS_PER_MINUTE + NS_PER_SECOND)


def _timed_collection() -> float:
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started


def main() -> list[Figure]:
    """Fill a day, time the pauses, print them and return them as figures."""
    engine = BarEngine()
    started = time.perf_counter()
    now_ns = _fill_day(engine)
    tracked = len(gc.get_objects())
    print(  # noqa: T201 - a benchmark reports on stdout
        f"{INSTRUMENTS:,} instruments x {MINUTES:,} minutes filled in "
        f"{time.perf_counter() - started:.1f} s: {tracked:,} tracked objects"
    )
    everything = min(_timed_collection() for _ in range(2))
    freeze_survivors()
    frozen = min(_timed_collection() for _ in range(2))
    _one_more_minute(engine, now_ns)
    periodic = freeze_survivors()
    gc.unfreeze()
    for label, seconds in (
        ("full collection, every bar tracked", everything),
        ("full collection after the freeze", frozen),
        ("periodic freeze after a minute at 1,000 trades/s", periodic),
    ):
        print(f"{label:<52} {seconds * 1000:9.1f} ms")  # noqa: T201
    goal = "a stall of every stream: as short as possible"
    return [
        Figure("GC pause, day of bars tracked", everything * 1000, "ms", goal),
        Figure("GC pause, day of bars frozen", frozen * 1000, "ms", goal),
        Figure("GC periodic freeze, 1 minute of bars", periodic * 1000, "ms", goal),
    ]


if __name__ == "__main__":
    main()
