"""Benchmark: raw Binance @trade frames -> msgspec decode -> columnar SymbolTrades.

Replays the real captures in shared/fixtures (read in place) through
``BinanceStreamDecoder`` and builds one ``SymbolTrades`` per ~1000 trades, as the
collector does per batch. Prints trades/s for spot and USD-M frames.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tickmesh.collector.binance import BinanceStreamDecoder
from tickmesh.core.fixtures import fixtures_root as _fixtures_dir
from tickmesh.v2 import market_pb2

_BATCH = 1000
_MIN_SECONDS = 3.0


def _frames(path: Path) -> list[bytes]:
    # Capture lines are "<local receive ts> <raw json>"; the raw JSON is the frame.
    with path.open("rb") as handle:
        return [line.split(b" ", 1)[1].rstrip(b"\n") for line in handle if b" " in line]


def _run(frames: list[bytes], exchange: market_pb2.Exchange.ValueType) -> tuple[int, float]:
    decoder = BinanceStreamDecoder(exchange)
    trades = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < _MIN_SECONDS:
        received = time.time_ns()
        feed = decoder.feed
        for frame in frames:
            feed(frame, received)
            if decoder.pending >= _BATCH:
                trades += sum(len(run.trade_ids) for run in decoder.take())
        trades += sum(len(run.trade_ids) for run in decoder.take())
        elapsed = time.perf_counter() - start
    if decoder.stats.error_count:
        raise SystemExit(f"unexpected decode errors: {decoder.stats.errors}")
    return trades, elapsed


def main() -> None:
    """Run the benchmark on the spot and USD-M captures and print trades/s."""
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
    for label, path, exchange in cases:
        frames = _frames(path)
        trades, elapsed = _run(frames, exchange)
        sys.stdout.write(
            f"bench_binance_parse {label}: {trades} trades in {elapsed:.2f} s = "
            f"{trades / elapsed:,.0f} trades/s (decode + columns + SymbolTrades per {_BATCH})\n"
        )


if __name__ == "__main__":
    main()
