"""BarService.Replay from storage to one client at maximum speed (goal: >= 500,000 bars/s at
max_batch 1000).

A real `python -m tickmesh.bars` process serves 1,000,000 stored bar versions (100
instruments, realistic serialized bars, one commit a millisecond) and one plaintext client
replays them all at speed 0, reading the raw response bytes as a bulk reader would before
decoding. Also measured at max_batch 1, one bar a response as live Subscribe sends them.
Besides bars/s of wall time it prints bars per CPU-second of the bar service process (from
/proc), which says what one core does when the machine is shared.

Uses TICKMESH_BENCH_DATABASE_URL or TICKMESH_TEST_DATABASE_URL (a server it may create a
scratch database on) and TICKMESH_TEST_REDIS_URL, else embedded servers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.report import Figure
from tickmesh.core.db.migrations import migrate
from tickmesh.core.protowire import embedded
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import market_pb2, replay_pb2

VERSIONS = 1_000_000
SINGLE = 200_000  # max_batch 1 reads the first this many: enough for a steady rate
SYMBOLS = 100
ADDRESS = "127.0.0.1:50562"
REPLAY = "/tickmesh.v2.BarService/Replay"
NS_PER_MS = 1_000_000


def _message(change_id: int) -> bytes:
    """A realistic stored bar: BTCUSDT-like prices, every field a live final bar carries."""
    return market_pb2.Bar(
        symbol="SYM042USDT",
        exchange=market_pb2.EXCHANGE_BINANCE_USDM,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=1_723_161_300_000_000_000,
        open="61700.8",
        high="61763.5",
        low="61683.6",
        close="61700.8",
        volume="203.143",
        quote_volume="12536520.4762",
        trade_count=3483,
        vwap=61713.3,
        final=True,
        change_id=change_id,
        taker_buy_volume="101.5",
        taker_buy_quote_volume="6268260.2381",
        committed_at_ns=1_764_979_200_000_000_000,
    ).SerializeToString()


async def _fill(url: str) -> int:
    """Migrate and store VERSIONS versions committed one a millisecond up to now; their end."""
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        end_ns = time.time_ns()
        await conn.execute(
            "INSERT INTO instruments (exchange, symbol) "
            "SELECT 'binance_usdm', 'SYM' || i || 'USDT' FROM generate_series(0, $1 - 1) AS i",
            SYMBOLS,
        )
        await conn.execute(
            "INSERT INTO bar_versions (instrument_id, timeframe, time, open, high, low, "
            "close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume, "
            "trade_count, vwap, revision, change_id, committed_at, message) "
            "SELECT instruments.id, '1m', "
            "to_timestamp(1723161300 + (i / $2) * 60), 61700.8, 61763.5, 61683.6, 61700.8, "
            "203.143, 12536520.4762, 101.5, 6268260.2381, 3483, 61713.3, 0, i, "
            "to_timestamp($3::double precision / 1e9) - ($1 - i) * interval '1 millisecond', $4 "
            "FROM generate_series(1, $1) AS i "
            "JOIN instruments ON symbol = 'SYM' || (i % $2) || 'USDT' ORDER BY i",
            VERSIONS,
            SYMBOLS,
            end_ns,
            _message(VERSIONS),
        )
        await conn.execute("ANALYZE bar_versions")
        return end_ns + NS_PER_MS
    finally:
        await conn.close()


async def _wait_serving(address: str) -> None:
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"bar service at {address} did not start")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _replay_rate(end_ns: int, max_batch: int, bars: int, pid: int) -> tuple[float, float]:
    """Bars/s (of wall time, of the server's CPU time) reading `bars` bars of a maximum-speed
    replay, response bytes undecoded."""
    start = replay_pb2.ReplayStart(end_time_ns=end_ns, speed=0, max_batch=max_batch)
    async with aio.insecure_channel(
        ADDRESS, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.stream_stream(
            REPLAY, request_serializer=replay_pb2.ReplayRequest.SerializeToString
        )(iter([replay_pb2.ReplayRequest(start=start)]))
        started = time.perf_counter()
        cpu_started = _cpu_seconds(pid)
        received = 0
        # A single bar's response is one length-delimited field; a batch of them repeats it.
        per_bar = len(embedded(1, [_message(VERSIONS)]))
        async for raw in call:
            received += len(raw) // per_bar
            if received >= bars:
                break
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(pid) - cpu_started
        call.cancel()
    if received < bars:
        raise RuntimeError(f"replay ended after {received:,} of {bars:,} bars")
    return received / elapsed, received / max(cpu, 1e-9)


Rates = tuple[tuple[float, float], tuple[float, float]]


async def _run(database_url: str, redis_url: str) -> Rates:
    end_ns = await _fill(database_url)
    environment = {
        **os.environ,
        "TICKMESH_GRPC_INSECURE": "true",
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_BARS_LISTEN": ADDRESS,
        "TICKMESH_BARS_METRICS_PORT": "0",
        "TICKMESH_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickmesh.bars", env=environment
    )
    try:
        await _wait_serving(ADDRESS)
        await _replay_rate(end_ns, 1000, 100_000, process.pid)  # warm caches and the pool
        batched = await _replay_rate(end_ns, 1000, VERSIONS, process.pid)
        single = await _replay_rate(end_ns, 1, SINGLE, process.pid)
        return batched, single
    finally:
        process.kill()
        await process.wait()


async def _scratch(server_url: str, redis_url: str) -> Rates:
    name = f"tickmesh_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(server_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    try:
        return await _run(url, redis_url)
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main() -> list[Figure]:
    """Replay from storage at maximum speed, batched and one bar a response."""
    server_url = os.environ.get("TICKMESH_BENCH_DATABASE_URL") or os.environ.get(
        "TICKMESH_TEST_DATABASE_URL"
    )
    redis_url = os.environ.get("TICKMESH_TEST_REDIS_URL")
    if server_url and redis_url:
        batched, single = asyncio.run(_scratch(server_url, redis_url))
    else:
        with tempfile.TemporaryDirectory() as state, EmbeddedServers(Path(state)) as servers:
            batched, single = asyncio.run(_run(servers.start_postgres(), servers.start_redis()))
    sys.stdout.write(
        f"bar replay from storage, one client, maximum speed ({VERSIONS:,} stored versions): "
        f"max_batch 1000 {batched[0]:,.0f} bars/s ({batched[1]:,.0f} per server CPU-second), "
        f"max_batch 1 {single[0]:,.0f} bars/s ({single[1]:,.0f} per server CPU-second)\n"
    )
    return [
        Figure("bar replay, max_batch 1000", batched[0], "bars/s", ">= 500,000"),
        Figure("bar replay, max_batch 1000, per server CPU-second", batched[1], "bars"),
        Figure("bar replay, max_batch 1", single[0], "bars/s"),
    ]


if __name__ == "__main__":
    main()
