"""Benchmark of the analytics domain: per instrument-bar latency of indicators + features + quality on one core.

Usage (from the repository root): .venv/bin/python -m bench.bench_analytics [--symbols 2000] [--warmup 201] [--bars 3]

Each symbol gets its own random walk. Warm-up feeds enough bars that every indicator and
feature is live (SMA 200 needs 200); only the bars after it are timed, each through
InstrumentAnalytics.on_bar, in the order a server sees them (one bar per instrument per minute).
Each timed minute is also a burst: every instrument's bar of that minute, back to back, as the
consumer meets them after a minute close; its process CPU time per symbol-bar is the fairest
figure on a shared box (wall-clock percentiles include the other processes' turns).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.report import Figure
from tickmesh.analytics.bars import BarInput
from tickmesh.analytics.pipeline import InstrumentAnalytics
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import NS_PER_MINUTE, from_label
from tickmesh.v2 import market_pb2

QUALITY_WARMUP = 130
START_NS = 1_700_000_000 * 1_000_000_000 // NS_PER_MINUTE * NS_PER_MINUTE


def random_walks(symbols: int, bars: int, seed: int) -> list[list[BarInput]]:
    """Return `bars` consistent OHLCV bars (with taker-buy volume) per symbol, one minute apart."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, (symbols, bars)), axis=1))
    open_ = np.concatenate((close[:, :1], close[:, :-1]), axis=1)
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.001, (symbols, bars)))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.001, (symbols, bars)))
    volume = rng.uniform(1.0, 50.0, (symbols, bars))
    # Drawn after the rest, so the prices and volumes are those of earlier versions of this bench.
    taker_buy = volume * rng.uniform(0.0, 1.0, (symbols, bars))
    return [
        [
            BarInput(
                START_NS + t * NS_PER_MINUTE,
                float(open_[s, t]),
                float(high[s, t]),
                float(low[s, t]),
                float(close[s, t]),
                float(volume[s, t]),
                float(volume[s, t] * close[s, t]),
                int(volume[s, t]) + 1,
                taker_buy_volume=float(taker_buy[s, t]),
            )
            for t in range(bars)
        ]
        for s in range(symbols)
    ]


class GcClock:
    """Wall time the garbage collector spends per generation while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.passes = [0, 0, 0]
        self._began = 0.0

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = int(info["generation"])
        self.seconds[generation] += time.perf_counter() - self._began
        self.passes[generation] += 1


def main(argv: Sequence[str] = ()) -> list[Figure]:
    """Run the benchmark, print p50/p99 ms per symbol-bar and bars/s, return them as figures."""
    parser = argparse.ArgumentParser(description="analytics per symbol-bar benchmark")
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=201)
    parser.add_argument("--bars", type=int, default=3)
    args = parser.parse_args(list(argv))
    minute = from_label("1m")
    walks = random_walks(args.symbols, args.warmup + args.bars, seed=7)
    streams = [
        InstrumentAnalytics(
            InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, f"SYM{index:04d}"), minute
        )
        for index in range(args.symbols)
    ]

    warm_start = time.perf_counter()
    for stream, walk in zip(streams, walks, strict=True):
        for index, bar in enumerate(walk[: args.warmup]):
            stream.window.update(bar)
            # Quality keeps at most its window of returns; earlier bars would only be dropped.
            if index >= args.warmup - QUALITY_WARMUP:
                stream.quality.observe(bar)
    warm_seconds = time.perf_counter() - warm_start

    latencies_ns: list[int] = []
    burst_cpu_ms: list[float] = []
    features_seen = 0
    measured_start = time.perf_counter()
    with GcClock() as collector:
        for t in range(args.warmup, args.warmup + args.bars):
            burst_start = time.process_time()
            for stream, walk in zip(streams, walks, strict=True):
                bar = walk[t]
                began = time.perf_counter_ns()
                result = stream.on_bar(bar, bar.open_time_ns + NS_PER_MINUTE)
                latencies_ns.append(time.perf_counter_ns() - began)
                features_seen = len(result.features[0].values)
            burst_cpu_ms.append((time.process_time() - burst_start) * 1e3)
    measured_seconds = time.perf_counter() - measured_start

    latencies_ms = np.array(latencies_ns, dtype=np.float64) / 1e6
    count = latencies_ms.shape[0]
    p50 = float(np.percentile(latencies_ms, 50))
    p99 = float(np.percentile(latencies_ms, 99))
    throughput = count / measured_seconds
    cpu_us = sum(burst_cpu_ms) * 1e3 / count
    bursts = ", ".join(f"{ms:.0f}" for ms in burst_cpu_ms)
    sys.stdout.write(
        f"symbols={args.symbols} warmup_bars={args.warmup} timed_bars_per_symbol={args.bars} "
        f"features_per_bar={features_seen}\n"
        f"warm-up: {args.symbols * args.warmup / warm_seconds:,.0f} bars/s (indicators only)\n"
        f"per symbol-bar (indicators + features + quality): "
        f"p50={p50:.3f} ms p99={p99:.3f} ms "
        f"max={latencies_ms.max():.3f} ms\n"
        f"throughput: {throughput:,.0f} bars/s on one core "
        f"({count} symbol-bars in {measured_seconds:.2f} s; 2,000 symbols x 1 bar/min needs 33 bars/s)\n"
        f"burst of {args.symbols} bars (one minute close): CPU {bursts} ms; "
        f"{cpu_us:.1f} CPU-us per symbol-bar; garbage collection "
        f"{sum(collector.seconds) * 1e3:.0f} ms in passes by generation {collector.passes}\n"
    )
    return [
        Figure("analytics p50 per symbol-bar", p50, "ms"),
        Figure("analytics p99 per symbol-bar", p99, "ms", "<= 5 ms"),
        Figure("analytics throughput, one core", throughput, "bars/s", ">= 33 bars/s"),
        Figure("analytics CPU per symbol-bar in a minute burst", cpu_us, "us"),
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
