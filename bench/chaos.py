"""`make chaos`: replay a capture through real bar and analytics services while killing them and PostgreSQL.

The chaos run SIGKILLs the bar service 10 times and the analytics service 10 times at random
points of the replay and stops its own embedded PostgreSQL for 30 s once (pg_ctl stop, then
start on the same data directory). Its final bars on every timeframe and its analytics rows
(indicators, ML features, data quality) are compared with an uninterrupted run's: the script
prints "0 lost, 0 doubled" or the differences, and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ at the repo root

from tests.ingest_helpers import capture_batches, fixtures_root, publish_until_acked
from tests.mesh_processes import ServiceProcess
from tests.test_bar_chaos import MINUTES, BarKey, BarValues, final_bars
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v1 import market_pb2

CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"
SYMBOL = "BTCUSDT"
# A loaded two-core machine can take well over the tests' 30 s to start analytics.
START_SECONDS = 120.0
ANALYTICS_TABLES = ("indicators", "ml_features", "data_quality_metrics")
RowKey = tuple[str, str, str]
Row = tuple[Any, ...]


@dataclass(frozen=True)
class ChaosPlan:
    """What the chaos run does to the mesh, and how fast it replays."""

    bar_kills: int = 10
    analytics_kills: int = 10
    outage_seconds: float = 30.0
    batch_size: int = 20
    # ~650 batches at 0.2 s: a replay of two minutes or more, long enough for every disturbance.
    pace_seconds: float = 0.2
    seed: int = 7


@dataclass
class Outcome:
    """The final bars and analytics rows of one run, and what happened on the way."""

    bars: dict[BarKey, BarValues]
    analytics: dict[RowKey, Row]
    seconds: float
    restarts_after_crash: int


def say(*parts: object, end: str = "\n", flush: bool = True) -> None:
    """Write one line of the report to stdout."""
    sys.stdout.write(" ".join(str(p) for p in parts) + end)
    if flush:
        sys.stdout.flush()


def _normalise(value: Any) -> Any:
    """Floats to 10 significant digits, JSON documents parsed: equal results compare equal."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, str) and value[:1] in "{[":
        return _normalise(json.loads(value))
    if isinstance(value, dict):
        return tuple(sorted((k, _normalise(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_normalise(v) for v in value)
    return value


async def _analytics_rows(database_url: str) -> dict[RowKey, Row]:
    """Every analytics row of the symbol, by (table, timeframe, time)."""
    rows: dict[RowKey, Row] = {}
    conn = await asyncpg.connect(database_url)
    try:
        for table in ANALYTICS_TABLES:
            for record in await conn.fetch(
                f"SELECT * FROM {table} WHERE symbol = $1",
                SYMBOL,
            ):
                key = (table, str(record["timeframe"]), record["time"].isoformat())
                # received_at is when analytics got the bar (wall clock), not derived data.
                rows[key] = tuple(
                    _normalise(v)
                    for name, v in record.items()
                    if name not in ("time", "symbol", "timeframe", "received_at")
                )
    finally:
        await conn.close()
    return rows


async def _settled_bars(address: str) -> dict[BarKey, BarValues]:
    """The final bars once every minute of the capture is final and they stand still (60 s at most)."""
    previous: dict[BarKey, BarValues] | None = None
    deadline = time.monotonic() + 60
    while True:
        current = await final_bars(address)
        minutes = sum(1 for timeframe, _ in current if timeframe == market_pb2.TIMEFRAME_1M)
        if (minutes >= MINUTES and current == previous) or time.monotonic() > deadline:
            return current
        previous = current
        await asyncio.sleep(0.5)


async def _settled_analytics(database_url: str, bar_count: int) -> dict[RowKey, Row]:
    """The analytics rows once every final bar has its indicators and features, and they stand still."""
    previous: dict[RowKey, Row] | None = None
    deadline = time.monotonic() + 120
    while True:
        current = await _analytics_rows(database_url)
        complete = all(
            sum(1 for table, _, _ in current if table == wanted) >= bar_count
            for wanted in ("indicators", "ml_features")
        )
        if (complete and current == previous) or time.monotonic() > deadline:
            return current  # when incomplete at the deadline, the comparison reports what is lost
        previous = current
        await asyncio.sleep(1.0)


async def _create_database(admin_url: str, name: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _fresh_redis(redis_url: str, index: int) -> str:
    url = f"{redis_url.split('?')[0]}?db={index}"
    client = redis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    return url


class Watchdog:
    """Restart a service that exited on its own, as `tickmesh run`'s supervisor would."""

    def __init__(self, services: Iterable[ServiceProcess]) -> None:
        self._services = list(services)
        self.restarts = 0
        self.paused = asyncio.Lock()

    async def run(self) -> None:
        """Check twice a second until cancelled."""
        while True:
            await asyncio.sleep(0.5)
            async with self.paused:
                for service in self._services:
                    if not service.running:
                        self.restarts += 1
                        say(f"  {service.service} exited on its own; restarting", flush=True)
                        await service.start(START_SECONDS)


async def run_once(
    servers: EmbeddedServers,
    admin_url: str,
    redis_url: str,
    index: int,
    plan: ChaosPlan | None,
) -> Outcome:
    """Replay the capture through fresh bar and analytics services; disturb them when `plan` says so."""
    started = time.monotonic()
    database_url = await _create_database(admin_url, f"tickmesh_chaos_{index}")
    common = {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": await _fresh_redis(redis_url, index),
        "TICKMESH_ENVIRONMENT": "test",
        "TICKMESH_STARTUP_RETRY_SECONDS": "120",
        "TICKMESH_DRAIN_SECONDS": "0.5",
    }
    bars = ServiceProcess("bars", {**common, "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    analytics = ServiceProcess(
        "analytics",
        {
            **common,
            "TICKMESH_BARS_ADDRESS": bars.address,
            "TICKMESH_ANALYTICS_RECONNECT_MAX_SECONDS": "0.5",
        },
    )
    batch_size = (plan or ChaosPlan()).batch_size
    pace = plan.pace_seconds if plan else 0.0  # bars follow event times: pacing changes nothing
    batches = capture_batches(
        fixtures_root() / CAPTURE, market_pb2.EXCHANGE_BINANCE_USDM, "chaos", batch_size
    )
    await bars.start(START_SECONDS)
    await analytics.start(START_SECONDS)
    watchdog = Watchdog((bars, analytics))
    guard = asyncio.create_task(watchdog.run())
    publisher = asyncio.create_task(publish_until_acked(bars.address, batches, pace))
    try:
        if plan is not None:
            # Every disturbance falls in the first 80% of the replay's undisturbed length.
            await _disturb(
                servers, bars, analytics, watchdog, plan, 0.8 * len(batches) * pace, publisher
            )
        acked = await asyncio.wait_for(publisher, timeout=600)
        assert acked == batches[-1].sequence
        say(f"  replay acknowledged after {time.monotonic() - started:.1f}s")
        final = await _settled_bars(bars.address)
        rows = await _settled_analytics(database_url, len(final))
    finally:
        guard.cancel()
        publisher.cancel()
        await asyncio.gather(guard, publisher, return_exceptions=True)
        await analytics.kill()
        await bars.kill()
    return Outcome(final, rows, time.monotonic() - started, watchdog.restarts)


async def _disturb(
    servers: EmbeddedServers,
    bars: ServiceProcess,
    analytics: ServiceProcess,
    watchdog: Watchdog,
    plan: ChaosPlan,
    replay_seconds: float,
    publisher: asyncio.Task[int],
) -> None:
    """Kill each service at random moments of the replay; stop PostgreSQL once among them."""
    chooser = random.Random(plan.seed)
    events: list[tuple[float, str]] = [
        (chooser.uniform(0.2, replay_seconds), "bars") for _ in range(plan.bar_kills)
    ]
    events += [
        (chooser.uniform(0.2, replay_seconds), "analytics") for _ in range(plan.analytics_kills)
    ]
    events.append((chooser.uniform(0.2, replay_seconds), "postgresql"))
    events.sort()
    begun = time.monotonic()
    for at, target in events:
        await asyncio.sleep(max(0.0, begun + at - time.monotonic()))
        before = time.monotonic()
        if publisher.done():
            say(f"  t={before - begun:5.1f}s the replay ended before this {target} event")
        async with watchdog.paused:
            if target == "postgresql":
                say(
                    f"  t={before - begun:5.1f}s stop postgresql for {plan.outage_seconds:.0f}s",
                    flush=True,
                )
                await asyncio.to_thread(servers.stop_postgres_server)
                await asyncio.sleep(plan.outage_seconds)
                await asyncio.to_thread(servers.restart_postgres_server)
                say("  postgresql is back", flush=True)
            else:
                service = bars if target == "bars" else analytics
                say(f"  t={before - begun:5.1f}s SIGKILL {target}", flush=True)
                await service.kill()
                await service.start(START_SECONDS)


def _compare(
    what: str,
    expected: dict[Any, Any],
    got: dict[Any, Any],
    doubled_when: Callable[[Any, Any], bool | None],
) -> tuple[int, int, list[str]]:
    """Lost and doubled counts and one line per difference between two keyed results."""
    lost = doubled = 0
    lines: list[str] = []
    for key, value in expected.items():
        if key not in got:
            lost += 1
            lines.append(f"{what} lost {key}: {value}")
        elif got[key] != value:
            verdict = doubled_when(value, got[key])
            if verdict is True:
                doubled += 1
            elif verdict is False:
                lost += 1
            lines.append(f"{what} differs {key}: expected {value}, got {got[key]}")
    for key, value in got.items():
        if key not in expected:
            doubled += 1
            lines.append(f"{what} extra {key}: {value}")
    return lost, doubled, lines


def _bar_verdict(expected: BarValues, got: BarValues) -> bool | None:
    """More trades than expected is doubling, fewer is loss (index 6 is the trade count)."""
    if got[6] == expected[6]:
        return None
    return got[6] > expected[6]


async def chaos(plan: ChaosPlan) -> int:
    """Run both replays and compare them; 0 when equal, 1 otherwise."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-chaos-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        admin_url = servers.start_postgres()
        redis_url = servers.start_redis()
        say("uninterrupted run ...", flush=True)
        calm = await run_once(servers, admin_url, redis_url, 1, None)
        say(
            f"  {len(calm.bars)} final bars, {len(calm.analytics)} analytics rows"
            f" in {calm.seconds:.1f}s",
            flush=True,
        )
        say(
            f"chaos run: {plan.bar_kills} bar kills, {plan.analytics_kills} analytics kills,"
            f" postgresql down {plan.outage_seconds:.0f}s once ...",
            flush=True,
        )
        rough = await run_once(servers, admin_url, redis_url, 2, plan)
        say(
            f"  {len(rough.bars)} final bars, {len(rough.analytics)} analytics rows"
            f" in {rough.seconds:.1f}s ({rough.restarts_after_crash} restarts after a crash)",
            flush=True,
        )
    bar_lost, bar_doubled, bar_lines = _compare("bar", calm.bars, rough.bars, _bar_verdict)
    row_lost, row_doubled, row_lines = _compare(
        "analytics row", calm.analytics, rough.analytics, lambda _e, _g: None
    )
    for line in bar_lines + row_lines:
        say(line)
    lost, doubled = bar_lost + row_lost, bar_doubled + row_doubled
    say(f"{lost} lost, {doubled} doubled", end="")
    if bar_lines or row_lines:
        say(f", {len(bar_lines) + len(row_lines)} differences")
        return 1
    say()
    return 0


def main() -> None:
    """Parse the few knobs, run, exit with the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=ChaosPlan.seed)
    parser.add_argument("--outage-seconds", type=float, default=ChaosPlan.outage_seconds)
    arguments = parser.parse_args()
    plan = ChaosPlan(seed=arguments.seed, outage_seconds=arguments.outage_seconds)
    sys.exit(asyncio.run(chaos(plan)))


if __name__ == "__main__":
    main()
