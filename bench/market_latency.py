"""End-to-end latencies of the whole-market bench, from exchange times to WebSocket receipts.

The simulator's replay calls `ExchangeTimes.record` with every trade it releases, so the
exchange time of the n-th trade of an instrument's minute is known. A forming bar that a
client receives with trade count n holds that trade as its newest: trade -> forming bar is
its arrival minus that trade's exchange time. A final bar and an indicator row of a minute
are timed from the minute's close (its open time + 60 s).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tickmesh.collector.simulator import Market
from tickmesh.collector.simulator.sources import SimTrade

MINUTE_MS = 60_000


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall (nan when there are none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


class ExchangeTimes:
    """The exchange time (ms) of every released trade, by (venue, symbol, minute), in order."""

    def __init__(self) -> None:
        self._times: dict[tuple[Market, str, int], array[int]] = {}
        self.first_ms: int | None = None

    def record(self, trade: SimTrade) -> None:
        """Note one released trade (the simulator's replay tap)."""
        key = (trade.market, trade.symbol, trade.time_ms // MINUTE_MS)
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = array("q")
            if self.first_ms is None:
                self.first_ms = trade.time_ms
        times.append(trade.time_ms)

    def nth(self, market: Market, symbol: str, minute: int, count: int) -> int | None:
        """The exchange time of the `count`-th trade (1-based) of a minute, if released."""
        times = self._times.get((market, symbol, minute))
        return times[count - 1] if times is not None and 0 < count <= len(times) else None


@dataclass
class Latencies:
    """Latencies (ms) of one kind of receipt, and how many receipts could not be matched."""

    values: list[float] = field(default_factory=list)
    burst_values: list[float] = field(default_factory=list)
    unmatched: int = 0
    # The steady-state values again, by the second of its minute the trade came in: whether
    # the tail comes from the minute closes' bursts or from anywhere.
    by_second: list[list[float]] = field(default_factory=lambda: [[] for _ in range(60)])

    def p99_by_second(self) -> str:
        """The p99 of the first six seconds of a minute, each, and of the rest together."""
        head = [f"{s}s {percentile(self.by_second[s], 0.99):.0f}" for s in range(6)]
        rest = [value for second in self.by_second[6:] for value in second]
        return ", ".join([*head, f"6-59s {percentile(rest, 0.99):.0f}"]) + " ms"


def forming_latencies(
    forming: Sequence[Sequence[float]],
    instruments: Sequence[tuple[Market, str]],
    times: ExchangeTimes,
    since_ms: float,
    in_burst: Callable[[float], bool],
) -> Latencies:
    """Trade -> forming bar for receipts of minutes opening at or after `since_ms`."""
    found = Latencies()
    for index, open_s, count, received_ms in forming:
        if open_s * 1000 < since_ms:
            continue
        market, symbol = instruments[int(index)]
        exchange_ms = times.nth(market, symbol, int(open_s) // 60, int(count))
        if exchange_ms is None:
            found.unmatched += 1
            continue
        latency = received_ms - exchange_ms
        if in_burst(exchange_ms):
            found.burst_values.append(latency)
        else:
            found.values.append(latency)
            found.by_second[int(exchange_ms % MINUTE_MS) // 1000].append(latency)
    return found


def close_latencies(
    receipts: Sequence[Sequence[float]], since_ms: float, until_ms: float
) -> Latencies:
    """Minute close -> receipt, for minutes opening in [since_ms, until_ms)."""
    found = Latencies()
    for _, open_s, received_ms in receipts:
        if since_ms <= open_s * 1000 < until_ms:
            found.values.append(received_ms - (open_s * 1000 + MINUTE_MS))
    return found


def final_versions(
    finals: Sequence[Sequence[float]],
) -> tuple[list[list[float]], list[list[float]], int]:
    """Final-bar receipts as [index, open time, received]: first versions, last versions, and
    how many bars were revised (the bar service finalises a live minute by the wall clock, so
    trades that reach it later revise the bar: the last version is the complete one)."""
    first: list[list[float]] = []
    last: dict[tuple[float, float], tuple[float, float]] = {}
    for index, open_s, revision, received_ms in finals:
        if revision == 0:
            first.append([index, open_s, received_ms])
        seen = last.get((index, open_s))
        if seen is None or revision >= seen[0]:
            last[(index, open_s)] = (revision, received_ms)
    latest = [[index, open_s, received] for (index, open_s), (_, received) in last.items()]
    revised = sum(1 for revision, _ in last.values() if revision > 0)
    return first, latest, revised
