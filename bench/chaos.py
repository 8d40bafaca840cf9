"""`make chaos`: replay a capture through the whole mesh while killing every service and PostgreSQL.

The exchange simulator replays a USD-M capture over Binance's protocols; a real collector,
bar service, analytics service and gateway (judging price alerts) run as processes. The
chaos run SIGKILLs each of the four services 10 times at random points of the replay (each
service on its own schedule, so the kills overlap) and stops its own embedded PostgreSQL for
30 s once (pg_ctl stop, then start on the same data directory). Its final bars on every
timeframe, its indicator and feature rows and its alert firings are compared with an
uninterrupted run's: the script prints "0 lost, 0 doubled" or the differences, and exits 1
on any difference.

A collector restart backfills the trades it missed over REST; when they belong to a minute
that became final meanwhile, that bar is revised (revision + 1): the comparison is on the
bar's values, not its revision number. Alerts judge each bar on its first final version
(DESIGN: alerts fire on final bars), so a firing is only compared on bars never revised.
Data-quality rows are not compared: out-of-order and late trades are what a disturbed run
really saw.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ at the repo root

from tests.chaos_mesh import (
    FiringKey,
    Mesh,
    Row,
    RowKey,
    alert_firings,
    analytics_rows,
    build_mesh,
    register_instrument_and_alerts,
    wait_subscribed,
)
from tests.ingest_helpers import fixtures_root
from tests.mesh_processes import ProcessExitedError, ServiceProcess
from tests.test_bar_chaos import MINUTES, BarKey, BarValues, final_bars
from tests.tls_helpers import TestPki
from tickmesh.collector.simulator import ExchangeSimulator, SimulatorConfig, SourceSpec
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import market_pb2

CAPTURE = "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"
# A loaded two-core machine can take well over the tests' 30 s to start a service.
START_SECONDS = 120.0
SERVICES = ("bars", "analytics", "collector", "gateway")


@dataclass(frozen=True)
class ChaosPlan:
    """What the chaos run does to the mesh, and how fast it replays."""

    kills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICES, 10))
    outage_seconds: float = 30.0
    # The capture's eight minutes at 2.5x: a replay of about 190 s.
    speed: float = 2.5
    seed: int = 7


@dataclass
class Outcome:
    """The final bars, analytics rows and alert firings of one run, and what happened on the way."""

    bars: dict[BarKey, BarValues]
    analytics: dict[RowKey, Row]
    firings: dict[FiringKey, int]
    seconds: float
    restarts_after_crash: int


def say(*parts: object, end: str = "\n", flush: bool = True) -> None:
    """Write one line of the report to stdout."""
    sys.stdout.write(" ".join(str(p) for p in parts) + end)
    if flush:
        sys.stdout.flush()


async def _settled_bars(
    address: str, credentials: grpc.ChannelCredentials | None
) -> dict[BarKey, BarValues]:
    """The final bars once every minute of the capture is final and they stand still (90 s at most)."""
    previous: dict[BarKey, BarValues] | None = None
    deadline = time.monotonic() + 90
    while True:
        current = await final_bars(address, credentials)
        minutes = sum(1 for timeframe, _ in current if timeframe == market_pb2.TIMEFRAME_1M)
        if (minutes >= MINUTES and current == previous) or time.monotonic() > deadline:
            return current
        previous = current
        await asyncio.sleep(1.0)


async def _settled_analytics(database_url: str, bar_count: int) -> dict[RowKey, Row]:
    """The analytics rows once every final bar has its indicators and features, and they stand still."""
    previous: dict[RowKey, Row] | None = None
    deadline = time.monotonic() + 120
    while True:
        current = await analytics_rows(database_url)
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


async def _start_until_up(service: ServiceProcess, attempts: int = 5) -> None:
    """Start a killed service; one that exits while starting is started again, as a supervisor would."""
    for attempt in range(1, attempts + 1):
        try:
            await service.start(START_SECONDS)
            return
        except ProcessExitedError as error:
            say(f"  {service.service} exited while starting (attempt {attempt}): restarting")
            if attempt == attempts:
                raise error


class Watchdog:
    """Restart a service that exited on its own, as `tickmesh run`'s supervisor would."""

    def __init__(self, services: Iterable[ServiceProcess]) -> None:
        self._services = list(services)
        self.restarts = 0
        self.paused = asyncio.Lock()
        # Services a kill schedule is restarting right now: not the watchdog's to start.
        self.handling: set[str] = set()

    async def run(self) -> None:
        """Check twice a second until cancelled."""
        while True:
            await asyncio.sleep(0.5)
            async with self.paused:
                for service in self._services:
                    if not service.running and service.service not in self.handling:
                        self.restarts += 1
                        say(f"  {service.service} exited on its own; restarting", flush=True)
                        await _start_until_up(service)


async def run_once(
    pki: TestPki,
    servers: EmbeddedServers,
    admin_url: str,
    redis_url: str,
    index: int,
    plan: ChaosPlan,
    disturb: bool,
) -> Outcome:
    """Replay the capture through a fresh mesh; disturb it when `disturb` says so."""
    started = time.monotonic()
    database_url = await _create_database(admin_url, f"tickmesh_chaos_{index}")
    common = {
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": await _fresh_redis(redis_url, index),
        "TICKMESH_ENVIRONMENT": "test",
        "TICKMESH_STARTUP_RETRY_SECONDS": "120",
        "TICKMESH_DRAIN_SECONDS": "0.5",
    }
    config = SimulatorConfig(
        sources=[SourceSpec(fixtures_root() / CAPTURE)], speed=plan.speed, paused=True
    )
    async with ExchangeSimulator(config) as sim:
        # Mutual TLS between every service, as deployed: each restart goes through a handshake.
        mesh = build_mesh(common, sim, pki)
        for service in mesh.services.values():
            await service.start(START_SECONDS)
        watchdog = Watchdog(mesh.services.values())
        guard = asyncio.create_task(watchdog.run())
        try:
            await register_instrument_and_alerts(mesh)
            await wait_subscribed(sim)
            await asyncio.sleep(1.0)  # the gateway's alert engine follows the instrument
            sim.resume()
            replay_seconds = _replay_seconds(plan)
            if disturb:
                await _disturb(servers, mesh, watchdog, plan, 0.8 * replay_seconds)
            async with asyncio.timeout(replay_seconds + 300):
                await sim.wait_replay_done()
            say(f"  replay done after {time.monotonic() - started:.1f}s")
            final = await _settled_bars(mesh.bars.address, mesh.bars.credentials("reader"))
            rows = await _settled_analytics(database_url, len(final))
            await asyncio.sleep(3.0)  # the last final bars reach the alert engine
            firings = await alert_firings(database_url)
        finally:
            guard.cancel()
            await asyncio.gather(guard, return_exceptions=True)
            for service in reversed(mesh.services.values()):
                await service.kill()
    return Outcome(final, rows, firings, time.monotonic() - started, watchdog.restarts)


def _replay_seconds(plan: ChaosPlan) -> float:
    """The capture's length in event time over the replay speed (8 minutes)."""
    return 8 * 60 / plan.speed


async def _disturb(
    servers: EmbeddedServers,
    mesh: Mesh,
    watchdog: Watchdog,
    plan: ChaosPlan,
    window_seconds: float,
) -> None:
    """Kill each service on its own random schedule; stop PostgreSQL once among them."""
    chooser = random.Random(plan.seed)
    begun = time.monotonic()

    async def kill_on_schedule(service: ServiceProcess, count: int) -> None:
        for at in sorted(chooser.uniform(0.5, window_seconds) for _ in range(count)):
            await asyncio.sleep(max(0.0, begun + at - time.monotonic()))
            say(f"  t={time.monotonic() - begun:5.1f}s SIGKILL {service.service}", flush=True)
            watchdog.handling.add(service.service)
            try:
                await service.kill()
                await _start_until_up(service)
            finally:
                watchdog.handling.discard(service.service)

    async def outage() -> None:
        await asyncio.sleep(chooser.uniform(0.5, window_seconds))
        async with watchdog.paused:
            say(
                f"  t={time.monotonic() - begun:5.1f}s stop postgresql"
                f" for {plan.outage_seconds:.0f}s",
                flush=True,
            )
            await asyncio.to_thread(servers.stop_postgres_server)
            await asyncio.sleep(plan.outage_seconds)
            await asyncio.to_thread(servers.restart_postgres_server)
            say("  postgresql is back", flush=True)

    await asyncio.gather(
        outage(),
        *(
            kill_on_schedule(service, plan.kills.get(name, 0))
            for name, service in mesh.services.items()
        ),
    )


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
    """More trades than expected is doubling, fewer is loss (index 8 is the trade count)."""
    if got[8] == expected[8]:
        return None
    return got[8] > expected[8]


def _values(bars: dict[BarKey, BarValues]) -> dict[BarKey, BarValues]:
    """The bars without their revision number (index 9): a late trade's revision is no loss."""
    return {key: (*values[:9], 0) for key, values in bars.items()}


def _unrevised_firings(
    firings: dict[FiringKey, int], bars: dict[BarKey, BarValues]
) -> dict[FiringKey, int]:
    """Firings on bars the disturbed run never revised (alerts judge a bar's first final)."""
    revised = {
        datetime.fromtimestamp(open_ns / 1e9, UTC).isoformat()
        for (_, open_ns), values in bars.items()
        if values[9] > 0
    }
    return {key: n for key, n in firings.items() if key[3] not in revised}


async def chaos(plan: ChaosPlan) -> int:
    """Run both replays and compare them; 0 when equal, 1 otherwise."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-chaos-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        admin_url = servers.start_postgres()
        redis_url = servers.start_redis()
        say("uninterrupted run ...", flush=True)
        pki = TestPki(Path(state) / "tls")
        say("mutual TLS on: a certificate per service from a CA made for this run")
        calm = await run_once(pki, servers, admin_url, redis_url, 1, plan, disturb=False)
        say(
            f"  {len(calm.bars)} final bars, {len(calm.analytics)} analytics rows,"
            f" {sum(calm.firings.values())} alert firings in {calm.seconds:.1f}s",
            flush=True,
        )
        kills = ", ".join(f"{n} {name} kills" for name, n in plan.kills.items())
        say(f"chaos run: {kills}, postgresql down {plan.outage_seconds:.0f}s once ...")
        rough = await run_once(pki, servers, admin_url, redis_url, 2, plan, disturb=True)
        revised = sum(1 for values in rough.bars.values() if values[9] > 0)
        say(
            f"  {len(rough.bars)} final bars ({revised} revised by late trades),"
            f" {len(rough.analytics)} analytics rows, {sum(rough.firings.values())} alert"
            f" firings in {rough.seconds:.1f}s ({rough.restarts_after_crash} restarts after"
            " a crash)",
            flush=True,
        )
    results = [
        _compare("bar", _values(calm.bars), _values(rough.bars), _bar_verdict),
        _compare("analytics row", calm.analytics, rough.analytics, lambda _e, _g: None),
        _compare(
            "alert firing",
            _unrevised_firings(calm.firings, rough.bars),
            _unrevised_firings(rough.firings, rough.bars),
            lambda expected, got: got > expected,
        ),
    ]
    lines = [line for _, _, found in results for line in found]
    for line in lines:
        say(line)
    lost = sum(result[0] for result in results)
    doubled = sum(result[1] for result in results)
    say(f"{lost} lost, {doubled} doubled", end="")
    if lines:
        say(f", {len(lines)} differences")
        return 1
    say()
    return 0


def main() -> None:
    """Parse the few knobs, run, exit with the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=ChaosPlan.seed)
    parser.add_argument("--outage-seconds", type=float, default=ChaosPlan.outage_seconds)
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per service")
    parser.add_argument("--speed", type=float, default=ChaosPlan.speed)
    arguments = parser.parse_args()
    plan = ChaosPlan(
        kills=dict.fromkeys(SERVICES, arguments.kills),
        outage_seconds=arguments.outage_seconds,
        speed=arguments.speed,
        seed=arguments.seed,
    )
    sys.exit(asyncio.run(chaos(plan)))


if __name__ == "__main__":
    main()
