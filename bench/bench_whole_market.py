"""The whole market on one box (issue 15): 2,000 instruments through the whole mesh for minutes.

The exchange simulator (in this process) plays a synthetic whole market over Binance's spot
and USD-M protocols: 2,000 instruments, Zipf-skewed (a few very busy, most thin), 20,000
trades/s with a 10 s burst at 100,000 trades/s at the end of every 5 minutes, each trade
stamped with its exchange time. A real collector, bar service, analytics service and gateway
run as processes on embedded PostgreSQL and Redis (the whole-market test's mesh,
tests/whole_market_mesh.py). A separate process holds 2,000 WebSocket clients, one per
instrument, subscribed to 1m; another asks the gateway for charts (bars and indicators) of
20 instruments in turn at CHART_RATE/s.

The clients connect before the market opens. Reported, from the first minute that opens after:
- trade -> forming bar on a client: arrival minus the exchange time of the bar's newest trade
  (p50, p99; in steady state and during bursts apart);
- minute close -> final bar, and minute close -> indicator row, on a client (p50, p99); the
  bar service finalises a minute only after its allowed lateness (2 s by default), so that
  much is in both figures. Features are not pushed over the WebSocket: the analytics update
  that carries a minute's indicators is written with its features, so the indicator figure
  stands for both;
- each process's CPU (mean % of one core) and RSS (start, end, max; psutil every 5 s);
- the database's growth per hour (pg_database_size before and after);
- the rate the simulator really released (it is Python and shares the two cores too).

TICKMESH_BENCH_WHOLE_MARKET_SECONDS sets the measured time (default 600: the issue's 10
minutes), TICKMESH_BENCH_WHOLE_MARKET_INSTRUMENTS the market's size (default 2,000),
TICKMESH_BENCH_WHOLE_MARKET_RATE the steady rate (default 20,000 trades/s),
TICKMESH_BENCH_WHOLE_MARKET_LATENESS_MS the bar service's allowed lateness (default: the
service's own, 2,000 ms); with a shorter one finals come sooner and more of them are revised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ at the repo root

from bench.bench_gateway import load_process, read_answer
from bench.market_latency import (
    MINUTE_MS,
    ExchangeTimes,
    Latencies,
    close_latencies,
    final_versions,
    forming_latencies,
    percentile,
)
from bench.market_stages import StageProbe, StageTimes, timeline
from bench.process_usage import UsageCurve, UsageSampler, postmaster_pid
from bench.report import Figure
from tests.gateway.processes import ADMIN, login
from tests.whole_market_mesh import (
    build_market_mesh,
    market_instruments,
    register_market,
    wait_market_subscribed,
)
from tickmesh.bars.settings import BarsSettings
from tickmesh.collector.simulator import ExchangeSimulator, Market, SimulatorConfig, WholeMarket
from tickmesh.collector.simulator.whole_market import LEDGER_TRADES_PER_SYMBOL, in_burst
from tickmesh.core.exchanges import exchange_label
from tickmesh.core.instruments import InstrumentId
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import market_pb2

SECONDS = float(os.environ.get("TICKMESH_BENCH_WHOLE_MARKET_SECONDS", "600"))
INSTRUMENTS = int(os.environ.get("TICKMESH_BENCH_WHOLE_MARKET_INSTRUMENTS", "2000"))
# The steady rate (trades/s; bursts are five times it): lower it to tell what the mesh does
# at a load the machine sustains from what it does overloaded.
RATE = float(os.environ.get("TICKMESH_BENCH_WHOLE_MARKET_RATE", "20000"))
# The bar service's allowed lateness (TICKMESH_BARS_ALLOWED_LATENESS_MS); unset: its default.
LATENESS_MS = os.environ.get("TICKMESH_BENCH_WHOLE_MARKET_LATENESS_MS", "")
MARKET = WholeMarket(INSTRUMENTS, rate=RATE, burst_rate=5 * RATE)
CHART_RATE = 20.0
CHART_INSTRUMENTS = 20
CONNECT_CONCURRENCY = 50
CONNECT_SECONDS = 300.0
START_SECONDS = 180.0


async def _database_size(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


async def _token(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        headers = await login(client, *ADMIN)
    return headers["Authorization"].removeprefix("Bearer ")


class _Outcome:
    """What one run measured."""

    def __init__(self) -> None:
        self.connected = 0
        self.forming = Latencies()
        self.final = Latencies()
        self.final_latest = Latencies()
        self.revised = 0
        self.indicators = Latencies()
        self.expected_finals = 0
        # Final 1m bars stored in the measured minutes that their client never received.
        self.stored_finals = 0
        self.unreceived: list[str] = []
        self.usage: list[UsageCurve] = []
        self.growth_bytes_per_hour = float("nan")
        self.released_per_second = float("nan")
        self.charts: dict[str, Any] = {}
        self.stages = StageTimes()
        self.timeline: list[str] = []


async def _measure(database_url: str, redis_url: str, state_dir: str) -> _Outcome:
    outcome = _Outcome()
    times = ExchangeTimes()
    config = SimulatorConfig(
        whole_market=MARKET,
        ledger_trades_per_symbol=LEDGER_TRADES_PER_SYMBOL,
        # Paused until the collector follows every instrument; the trades are stamped from then.
        paused=True,
        seed=1,
    )
    common = {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_LOG_LEVEL": "WARNING",
        "TICKMESH_DRAIN_SECONDS": "1",
    }
    async with ExchangeSimulator(config) as sim:
        sim.replay.trade_taps.append(times.record)
        # The services' own commit, poll and retry intervals, not the tests' shorter ones.
        bars_settings = {"TICKMESH_BARS_ALLOWED_LATENESS_MS": LATENESS_MS} if LATENESS_MS else {}
        mesh = build_market_mesh(
            common, sim, INSTRUMENTS, quick_timings=False, bars_settings=bars_settings
        )
        children: list[asyncio.subprocess.Process] = []
        try:
            for service in mesh.services.values():
                await service.start(START_SECONDS)
            instruments = market_instruments(sim)
            await register_market(mesh, instruments)
            await wait_market_subscribed(sim, instruments, START_SECONDS)
            token = await _token(mesh.gateway.base_url)
            # The clients connect before the market opens, as a deployment's are there when a
            # burst comes (under load the collector answers the gateway's registry reads late).
            clients = await load_process(
                mesh.gateway.base_url,
                token,
                str(CONNECT_CONCURRENCY),
                str(CONNECT_SECONDS),
                *(str(instrument) for instrument in instruments),
                module="bench.market_clients",
            )
            children.append(clients)
            outcome.connected = int((await read_answer(clients))["connected"])
            probe = StageProbe()
            following = asyncio.create_task(
                probe.follow(mesh.bars.channel(), mesh.analytics.channel()), name="stage-probe"
            )
            sim.resume()
            size_before, began = await _database_size(database_url), time.monotonic()
            emitted_before = sim.stats.trades_emitted
            # Measured from the first minute that opens with every client connected.
            since_ms = (time.time() * 1000 // MINUTE_MS + 1) * MINUTE_MS
            until_ms = since_ms + SECONDS * 1000
            step = max(1, len(instruments) // CHART_INSTRUMENTS)
            paths = ",".join(
                f"/api/v1/charts/{instrument}?timeframe=1m&limit=300"
                for instrument in instruments[::step][:CHART_INSTRUMENTS]
            )
            wait_s = (since_ms - time.time() * 1000) / 1000
            charts = await load_process(
                "http", mesh.gateway.base_url, paths, token, str(CHART_RATE),
                str(wait_s + SECONDS), "5",
            )  # fmt: skip
            children.append(charts)
            pids = {name: service.pid for name, service in mesh.services.items()}
            pids |= {"bench (simulator)": os.getpid(), "ws clients": clients.pid}
            pids["chart load"] = charts.pid
            postgres = postmaster_pid(state_dir)
            sampler = UsageSampler(
                {n: p for n, p in pids.items() if p is not None},
                {} if postgres is None else {"postgres (all processes)": postgres},
            )
            sampling = asyncio.create_task(sampler.run())
            # Final bars and indicator rows of the last measured minute come after its close.
            await asyncio.sleep(until_ms / 1000 - time.time() + 15.0)
            sampling.cancel()
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            outcome.usage = list(sampler.curves.values())
            outcome.released_per_second = (sim.stats.trades_emitted - emitted_before) / (
                time.monotonic() - began
            )
            outcome.growth_bytes_per_hour = (
                (await _database_size(database_url) - size_before)
                / (time.monotonic() - began)
                * 3600
            )
            assert clients.stdin is not None
            clients.stdin.write(b"stop\n")
            await clients.stdin.drain()
            receipts = (await read_answer(clients))["receipts"]
            outcome.charts = await read_answer(charts)
            venues = [
                (
                    Market.SPOT
                    if instrument.exchange == market_pb2.EXCHANGE_BINANCE_SPOT
                    else Market.USDM,
                    instrument.symbol,
                )
                for instrument in instruments
            ]
            first_ms = times.first_ms or 0
            outcome.forming = forming_latencies(
                receipts["forming"],
                venues,
                times,
                since_ms,
                lambda exchange_ms: in_burst(MARKET, (exchange_ms - first_ms) / 1000),
            )
            # Minutes that close by the end of the measured time.
            last_open_ms = until_ms - MINUTE_MS + 1
            measured = [r for r in receipts["final"] if since_ms <= r[1] * 1000 < last_open_ms]
            first, latest, outcome.revised = final_versions(measured)
            outcome.final = close_latencies(first, since_ms, last_open_ms)
            outcome.final_latest = close_latencies(latest, since_ms, last_open_ms)
            outcome.indicators = close_latencies(receipts["indicators"], since_ms, last_open_ms)
            outcome.stages = probe.stages(since_ms, last_open_ms)
            outcome.timeline = timeline(
                probe, first, receipts["indicators"], since_ms, last_open_ms
            )
            outcome.expected_finals = outcome.connected * int(SECONDS * 1000 // MINUTE_MS)
            outcome.stored_finals, outcome.unreceived = await _unreceived_finals(
                database_url, instruments, first, since_ms, last_open_ms
            )
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
            for service in mesh.services.values():
                await service.kill()
    return outcome


async def _unreceived_finals(
    database_url: str,
    instruments: list[InstrumentId],
    first: list[list[float]],
    since_ms: float,
    until_ms: float,
) -> tuple[int, list[str]]:
    """How many final 1m bars the database holds for the clients' instruments in the measured
    minutes, and those no client received (a bar the store has and a client lacks was lost on
    the way; a minute without a stored bar had no trade to make one)."""
    received = {(int(index), int(open_s)) for index, open_s, _ in first}
    position = {(exchange_label(i.exchange), i.symbol): n for n, i in enumerate(instruments)}
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT i.exchange, i.symbol, extract(epoch FROM c.time)::bigint AS open_s "
            "FROM candles c JOIN instruments i ON i.id = c.instrument_id "
            "WHERE c.timeframe = '1m' AND c.time >= to_timestamp($1) AND c.time < to_timestamp($2)",
            since_ms / 1000,
            until_ms / 1000,
        )
    finally:
        await conn.close()
    stored = [(position[(r[0], r[1])], r[2]) for r in rows if (r[0], r[1]) in position]
    missing = sorted(key for key in stored if key not in received)
    return len(stored), [
        f"{instruments[index]} {time.strftime('%H:%M', time.gmtime(open_s))}"
        for index, open_s in missing
    ]


def _figures(outcome: _Outcome) -> list[Figure]:
    """The figures of a run, printed as they are built."""
    forming, final, indicators = outcome.forming, outcome.final, outcome.indicators
    chart_ms = [1000 * float(x) for x in outcome.charts.get("latencies", [])]
    label = f"whole market {INSTRUMENTS} instr."
    lateness_ms = (
        float(LATENESS_MS) if LATENESS_MS else float(BarsSettings().bars_allowed_lateness_ms)
    )
    figures = [
        Figure(f"{label}: bars allowed lateness", lateness_ms, "ms"),
        Figure(f"{label}: simulator released", outcome.released_per_second, "trades/s", f"{RATE:,.0f}"),
        Figure(f"{label}: WebSocket clients connected", outcome.connected, "clients", "2,000"),
        Figure(f"{label}: trade -> forming bar p50", percentile(forming.values, 0.5), "ms"),
        Figure(f"{label}: trade -> forming bar p99", percentile(forming.values, 0.99), "ms", "<= 100 ms"),
        Figure(f"{label}: trade -> forming bar p99 in bursts", percentile(forming.burst_values, 0.99), "ms", "<= 500 ms"),
        Figure(f"{label}: minute close -> final bar p50", percentile(final.values, 0.5), "ms"),
        Figure(f"{label}: minute close -> final bar p99", percentile(final.values, 0.99), "ms"),
        Figure(f"{label}: minute close -> last revision p99", percentile(outcome.final_latest.values, 0.99), "ms"),
        Figure(f"{label}: final bars later revised", outcome.revised, "bars", "0"),
        Figure(f"{label}: stored final bars not received", len(outcome.unreceived), "bars", "0"),
        *_stage_figures(label, outcome.stages),
        Figure(f"{label}: minute close -> indicators p50", percentile(indicators.values, 0.5), "ms"),
        Figure(f"{label}: minute close -> indicators p99", percentile(indicators.values, 0.99), "ms", "<= 250 ms"),
        Figure(f"{label}: charts p99 @{CHART_RATE:g}/s", percentile(chart_ms, 0.99), "ms"),
        Figure(f"{label}: database growth", outcome.growth_bytes_per_hour / 1024**3, "GB/h"),
    ]  # fmt: skip
    for curve in outcome.usage:
        start, end, largest = curve.rss_summary()
        goal = "<= 25 %" if curve.name == "bars" else ""
        figures.append(Figure(f"{label}: {curve.name} CPU", curve.cpu_mean(), "% core", goal))
        if curve.rss:
            figures.append(Figure(f"{label}: {curve.name} RSS max", largest, "MB"))
        memory = f", RSS {start:.0f} MB -> {end:.0f} MB (max {largest:.0f} MB)" if curve.rss else ""
        sys.stdout.write(
            f"{curve.name}: CPU mean {curve.cpu_mean():.0f} % of a core (max of 5 s samples "
            f"{max(curve.cpu, default=float('nan')):.0f} %){memory}\n"
        )
        if curve.rss:
            # The memory curve: flat apart from capped caches is the goal over a day's run.
            minutes = " ".join(f"{mb:.0f}" for mb in curve.rss_curve(MINUTE_MS / 1000))
            sys.stdout.write(f"{curve.name}: RSS each minute from the start, MB: {minutes}\n")
    sys.stdout.write(
        f"trade -> forming bar p99 by second of the minute: {forming.p99_by_second()}\n"
    )
    sys.stdout.write(
        f"{SECONDS:.0f} s measured: {len(forming.values)} forming receipts in steady state, "
        f"{len(forming.burst_values)} in bursts, {forming.unmatched} unmatched; "
        f"{len(final.values)} of {outcome.expected_finals} final bars and "
        f"{len(indicators.values)} indicator rows received; {outcome.stored_finals} final bars "
        f"stored, {len(outcome.unreceived)} of them not received"
        f"{' (' + ', '.join(outcome.unreceived[:10]) + ')' if outcome.unreceived else ''}; charts "
        f"{len(chart_ms)} ok, {outcome.charts.get('failures')} failed, "
        f"{outcome.charts.get('unfinished')} unfinished\n"
    )
    for line in outcome.timeline:
        sys.stdout.write(f"{line}\n")
    for figure in figures:
        sys.stdout.write(f"  {figure.name}: {figure.value:,.1f} {figure.unit}\n")
    return figures


def _stage_figures(label: str, stages: StageTimes) -> list[Figure]:
    """Minute close -> each upstream stage (bench/market_stages.py), p50 and p99."""
    named = (
        ("bar service committed the final", stages.bars_committed),
        ("final on the bar stream", stages.bars_streamed),
        ("analytics committed the indicators", stages.analytics_committed),
        ("indicators on the analytics stream", stages.analytics_streamed),
    )
    return [
        Figure(f"{label}: minute close -> {name} p{int(q * 100)}", percentile(values, q), "ms")
        for name, values in named
        for q in (0.5, 0.99)
    ]


def main() -> list[Figure]:
    """Run the whole-market scenario and return its figures."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        outcome = asyncio.run(_measure(servers.start_postgres(), servers.start_redis(), state))
    return _figures(outcome)


if __name__ == "__main__":
    main()
