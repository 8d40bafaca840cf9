"""Benchmark: raw Binance @trade frames -> msgspec decode -> columnar SymbolTrades.

Replays the real captures in shared/fixtures (read in place) through
``BinanceStreamDecoder`` and builds one ``SymbolTrades`` per ~1000 trades, as the
collector does per batch. Prints two figures per capture:

- warm: trades/s of one decoder fed the capture over and over for a few seconds, the
  process's decimal caches full after the first pass;
- cold: CPU time per trade of a fresh decoder's first pass with empty caches (what a new
  process pays: every distinct price and quantity parsed once, instruments first seen), best
  and median of several passes, each with a new decoder.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

from bench.report import Figure
from tickmesh.collector.binance import BinanceStreamDecoder
from tickmesh.collector.binance.columns import forget_cached_values
from tickmesh.core.fixtures import fixtures_root as _fixtures_dir
from tickmesh.v2 import market_pb2

_BATCH = 1000
_MIN_SECONDS = 3.0
_COLD_PASSES = 9


def _frames(path: Path) -> list[bytes]:
    # Capture lines are "<local receive ts> <raw json>"; the raw JSON is the frame.
    with path.open("rb") as handle:
        return [line.split(b" ", 1)[1].rstrip(b"\n") for line in handle if b" " in line]


def _pass(decoder: BinanceStreamDecoder, frames: list[bytes], received: int) -> int:
    """Feed every frame once, taking a batch per _BATCH trades; the trades taken."""
    trades = 0
    feed = decoder.feed
    for frame in frames:
        feed(frame, received)
        if decoder.pending >= _BATCH:
            trades += sum(len(run.trade_ids) for run in decoder.take())
    trades += sum(len(run.trade_ids) for run in decoder.take())
    return trades


def _check(decoder: BinanceStreamDecoder) -> None:
    if decoder.stats.error_count:
        raise SystemExit(f"unexpected decode errors: {decoder.stats.errors}")


def _warm(frames: list[bytes], exchange: market_pb2.Exchange.ValueType) -> tuple[int, float]:
    decoder = BinanceStreamDecoder(exchange)
    trades = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < _MIN_SECONDS:
        trades += _pass(decoder, frames, time.time_ns())
        elapsed = time.perf_counter() - start
    _check(decoder)
    return trades, elapsed


def _cold(frames: list[bytes], exchange: market_pb2.Exchange.ValueType) -> list[float]:
    """CPU ns per trade of each fresh decoder's one pass (construction included)."""
    per_trade: list[float] = []
    for _ in range(_COLD_PASSES):
        # Each pass starts from the same heap: the previous decoder's garbage collected.
        gc.collect()
        forget_cached_values()
        received = time.time_ns()
        start = time.process_time_ns()
        decoder = BinanceStreamDecoder(exchange)
        trades = _pass(decoder, frames, received)
        per_trade.append((time.process_time_ns() - start) / trades)
        _check(decoder)
    return per_trade


def main() -> list[Figure]:
    """Run the benchmark on the spot and USD-M captures; print and return the figures."""
    fixtures = _fixtures_dir()
    cases = [
        (
            "spot @trade",
            fixtures / "binance_spot" / "BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt",
            market_pb2.EXCHANGE_BINANCE_SPOT,
        ),
        (
            "usdm @trade",
            fixtures
            / "binance_futures_um"
            / "BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt",
            market_pb2.EXCHANGE_BINANCE_USDM,
        ),
    ]
    figures: list[Figure] = []
    for label, path, exchange in cases:
        frames = _frames(path)
        cold = _cold(frames, exchange)
        sys.stdout.write(
            f"bench_binance_parse {label} cold: {len(frames)} frames, fresh decoder per pass, "
            f"CPU {min(cold):,.0f} ns/trade best, {statistics.median(cold):,.0f} median, "
            f"{max(cold):,.0f} max of {len(cold)} passes\n"
        )
        trades, elapsed = _warm(frames, exchange)
        sys.stdout.write(
            f"bench_binance_parse {label}: {trades} trades in {elapsed:.2f} s = "
            f"{trades / elapsed:,.0f} trades/s (decode + columns + SymbolTrades per {_BATCH})\n"
        )
        figures.append(
            Figure(f"binance parse {label} cold (median)", statistics.median(cold), "ns/trade CPU")
        )
        figures.append(Figure(f"binance parse {label} warm", trades / elapsed, "trades/s"))
    return figures


if __name__ == "__main__":
    main()
