"""The gateway's bar fan-out against a real bar service: one upstream per shard, reopened for
each new instrument without losing or repeating a final committed meanwhile."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.metrics import CoreMetrics
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.fanout import BarFanout
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.v2 import market_pb2

from ..grpc_helpers import free_port
from ..ingest_helpers import publish_until_acked
from ..mesh_processes import ServiceProcess

MINUTE_NS = 60 * 1_000_000_000
START_NS = 1_704_153_600 * 1_000_000_000  # 2024-01-02 00:00 UTC
ROUNDS = 6


def _trade(symbol: str, sequence: int, trade_id: int, time_ns: int) -> market_pb2.TradeBatch:
    """One trade of quantity 1 at 100 on its own stream (a stream per symbol)."""
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=[trade_id],
        prices=[100],
        quantities=[1],
        event_time_ns=[time_ns],
        receive_time_ns=[time_ns],
    )
    return market_pb2.TradeBatch(stream_id=f"shard-{symbol}", sequence=sequence, trades=[run])


async def test_one_upstream_reopened_per_new_instrument_loses_and_repeats_no_final(
    bars: ServiceProcess,
) -> None:
    backends = Backends("127.0.0.1:1", [bars.address], [], timeout_seconds=5.0)
    fanout = BarFanout(backends, GatewayMetrics(CoreMetrics()))
    busy = InstrumentId(market_pb2.EXCHANGE_SIMULATOR, f"SH{secrets.token_hex(3).upper()}")
    received: dict[InstrumentId, list[market_pb2.Bar]] = {}

    def listener_of(instrument: InstrumentId) -> list[market_pb2.Bar]:
        bars_of = received.setdefault(instrument, [])
        fanout.add(instrument, bars_of.append)
        return bars_of

    async def until(holds: Callable[[], object]) -> None:
        async with asyncio.timeout(20):
            while not holds():  # noqa: ASYNC110 - another process's bars arriving
                await asyncio.sleep(0.02)

    try:
        busy_bars = listener_of(busy)
        await publish_until_acked(bars.address, [_trade(busy.symbol, 1, 1, START_NS + 5 * 10**9)])
        await until(lambda: busy_bars)
        newcomers = []
        for round_ in range(1, ROUNDS + 1):
            # A new instrument reopens the shard's stream while the busy one's previous minute
            # becomes final (its next minute's trade moves the watermark past it).
            newcomer = InstrumentId(market_pb2.EXCHANGE_SIMULATOR, f"{busy.symbol}N{round_}")
            newcomers.append(listener_of(newcomer))
            trade_ns = START_NS + round_ * MINUTE_NS + 5 * 10**9
            await publish_until_acked(
                bars.address, [_trade(busy.symbol, round_ + 1, round_ + 1, trade_ns)]
            )
            await publish_until_acked(bars.address, [_trade(newcomer.symbol, 1, 1, trade_ns)])

        def finals() -> list[int]:
            return [
                bar.open_time_ns
                for bar in busy_bars
                if bar.final and bar.timeframe == market_pb2.TIMEFRAME_1M
            ]

        expected = [START_NS + minute * MINUTE_NS for minute in range(ROUNDS)]
        await until(lambda: len(finals()) >= ROUNDS)
        await until(lambda: all(newcomers))
        await asyncio.sleep(0.5)  # a repeat would come right after
        assert finals() == expected  # each minute once, in order
        assert fanout.upstream_count() == 1
        assert all(bar.symbol == busy.symbol for bar in busy_bars)
        assert all(
            bar.symbol == f"{busy.symbol}N{index}"
            for index, bars_of in enumerate(newcomers, 1)
            for bar in bars_of
        )
    finally:
        await fanout.close()
        await backends.close()
    assert fanout.upstream_count() == 0


async def test_removing_the_last_instrument_stops_a_failing_stream_at_once() -> None:
    # Nothing listens there: every call fails at once and is reopened with backoff; removals
    # land at different points of that cycle, and each must stop the stream. (The race this
    # guards, a cancellation swallowed by wait_for as the headers came, showed in about half
    # the runs of test_token_redaction's production case, not reliably here.)
    backends = Backends("127.0.0.1:1", [f"127.0.0.1:{free_port()}"], [], timeout_seconds=5.0)
    fanout = BarFanout(backends, GatewayMetrics(CoreMetrics()))
    instrument = InstrumentId(market_pb2.EXCHANGE_SIMULATOR, "GONE")

    def listener(bar: market_pb2.Bar) -> None:
        raise AssertionError(f"no bar can come: {bar}")

    try:
        for attempt in range(40):
            fanout.add(instrument, listener)
            await asyncio.sleep(attempt % 8 * 0.005)
            async with asyncio.timeout(2):
                await fanout.remove(instrument, listener)
            assert fanout.upstream_count() == 0
    finally:
        await fanout.close()
        await backends.close()
