"""Benchmark: the bar engine building bars on all six timeframes from columnar trade runs.

Synthetic random-walk trades, interleaved across symbols and cut into runs (one `SymbolTrades`
per symbol per ingest batch). Scenarios: a few busy symbols (about 1,500 trades a minute each,
BTCUSDT's pace, runs of 1000) in order; the same with every run shuffled and 10% of the runs
re-sent (duplicates); the same converted from `SymbolTrades` messages first (what the server
does per batch); and many thin symbols (30 trades a minute, runs of 100), where the per-run
overhead dominates. Prices and quantities are exact int64 mantissas (BTCUSDT's 0.1 tick and 0.001
step: scales 1 and 3) with aggressor sides, so every bar also sums its taker-buy volumes.
Prints trades/s per scenario on one core and returns them as figures for
`python -m bench`; also runs as a plain script: `.venv/bin/python bench/bench_bar_engine.py`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND
from tickmesh.v2 import market_pb2

if not __package__:
    # Run as a plain script: make the repository root importable so `bench.report` resolves.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.report import Figure

_Run = TypeVar("_Run", TradeRun, market_pb2.SymbolTrades)
_START_NS = 1_722_470_400 * NS_PER_SECOND  # 2024-08-01 00:00 UTC


def _symbol_trades(
    rng: np.random.Generator, symbol_index: int, size: int, per_minute: int
) -> TradeRun:
    """One symbol's whole synthetic trade stream, in order."""
    gaps = rng.exponential(NS_PER_MINUTE / per_minute, size).astype(np.int64)
    times = _START_NS + np.cumsum(gaps)
    # Mantissas: prices at scale 1 (30000.0 is 300000), quantities at scale 3 (0.001 is 1).
    prices = np.round(300_000.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-5, size)))).astype(np.int64)
    quantities = np.round(rng.exponential(50.0, size)).astype(np.int64) + 1
    sides = rng.integers(1, 3, size).astype(np.int8)  # AGGRESSOR_SIDE_BUY or _SELL
    ids = np.arange(size, dtype=np.int64) + 1_000_000_000 * (symbol_index + 1)
    return TradeRun.from_columns(
        market_pb2.EXCHANGE_BINANCE_USDM,
        f"SYM{symbol_index}USDT",
        ids,
        prices,
        quantities,
        times,
        sides=sides,
        price_scale=1,
        quantity_scale=3,
    )


def _runs(streams: list[TradeRun], run_size: int) -> list[TradeRun]:
    """Cut every stream into runs and interleave the symbols, as ingest batches arrive."""
    cuts = [
        [
            stream.take(np.arange(start, min(start + run_size, len(stream))))
            for start in range(0, len(stream), run_size)
        ]
        for stream in streams
    ]
    return [run for group in zip(*cuts, strict=True) for run in group]


def _disordered(rng: np.random.Generator, runs: list[TradeRun]) -> list[TradeRun]:
    """Shuffle each run and re-send every tenth run (a collector resending unacked batches)."""
    disordered: list[TradeRun] = []
    for position, run in enumerate(runs):
        disordered.append(run.take(rng.permutation(len(run))))
        if position % 10 == 9:
            disordered.append(runs[position - 4])
    return disordered


def _timed(label: str, runs: Sequence[_Run], apply: Callable[[BarEngine, _Run], int]) -> float:
    """Replay runs into a fresh engine, best of three; print and return trades/s of all input."""
    total = sum(len(run.trade_ids) for run in runs)
    best = float("inf")
    finals = 0
    for _ in range(3):
        engine = BarEngine()
        finals = 0
        start = time.perf_counter()
        for run in runs:
            finals += apply(engine, run)
        best = min(best, time.perf_counter() - start)
    rate = total / best
    print(  # noqa: T201 - a benchmark reports on stdout
        f"{label:<46} {total:>10,} trades {best:7.3f} s {rate:>13,.0f} trades/s "
        f"({finals:,} final bars)"
    )
    return rate


def _apply(engine: BarEngine, run: TradeRun) -> int:
    return len(engine.apply_trades(run).updates)


def _apply_message(engine: BarEngine, message: market_pb2.SymbolTrades) -> int:
    return len(engine.apply_trades(TradeRun.from_proto(message)).updates)


def _message(run: TradeRun) -> market_pb2.SymbolTrades:
    return market_pb2.SymbolTrades(
        exchange=market_pb2.Exchange.ValueType(run.exchange),
        symbol=run.symbol,
        trade_ids=run.trade_ids.tolist(),
        prices=run.prices.tolist(),
        quantities=run.quantities.tolist(),
        sides=[] if run.sides is None else run.sides.tolist(),
        event_time_ns=run.event_time_ns.tolist(),
        price_scale=run.price_scale,
        quantity_scale=run.quantity_scale,
    )


def main() -> list[Figure]:
    """Run the scenarios, print their throughput and return it as figures."""
    rng = np.random.default_rng(20240801)
    busy = _runs([_symbol_trades(rng, index, 1_000_000, 1500) for index in range(4)], 1000)
    thin = _runs([_symbol_trades(rng, index, 4_000, 30) for index in range(250)], 100)
    messages = [_message(run) for run in busy[: len(busy) // 4]]
    print("bar engine, 6 timeframes, one core")  # noqa: T201 - a benchmark reports on stdout
    goal = ">= 2,000,000 trades/s"
    return [
        Figure(
            "bar engine, busy symbols, in order",
            _timed("4 busy symbols, runs of 1000, in order", busy, _apply),
            "trades/s",
            goal,
        ),
        Figure(
            "bar engine, busy symbols, shuffled + re-sent",
            _timed("4 busy symbols, shuffled runs, 10% re-sent", _disordered(rng, busy), _apply),
            "trades/s",
            goal,
        ),
        Figure(
            "bar engine, from SymbolTrades messages",
            _timed("4 busy symbols, from SymbolTrades messages", messages, _apply_message),
            "trades/s",
        ),
        Figure(
            "bar engine, thin symbols, runs of 100",
            _timed("250 thin symbols, runs of 100, in order", thin, _apply),
            "trades/s",
        ),
    ]


if __name__ == "__main__":
    main()
