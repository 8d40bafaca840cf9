"""The gateway under load: chart latency and cache hit rate, and WebSocket fan-out push lag.

A real `python -m tickmesh.bars` and `python -m tickmesh.gateway` on embedded PostgreSQL and
Redis, and a collector that only serves the instrument registry; the gateway's WebSocket
limits per address and per user are raised for 5,000 clients of one address and one user.
The bar service first gets ten hours of synthetic trades of one instrument (600 final
1m bars). Then (a) `GET /api/v1/charts/{instrument}?limit=500&indicators=false` at 200 req/s,
open loop, for 10 s (goals: p99 at most 20 ms, cache hit rate at least 99 %: the gateway's
chart cache, which answers before the bar service is asked); (b) 5,000 WebSocket clients
subscribe to 1m while one trade a second with a new price goes into the bar service; each
client times the trade until it receives a forming bar with that close (goal: p99 at most
200 ms). The load generators are separate processes with hand-written HTTP and WebSocket
clients (bench/gateway_clients.py), cheap enough that the figures are the gateway's, though
on a small machine they still share its cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.market_latency import percentile
from bench.report import Figure
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v2 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    market_pb2,
)

SYMBOL = "GWBENCHUSDT"
INSTRUMENT = f"simulator:{SYMBOL}"  # the text form the gateway's paths take
PRICE_SCALE = 2  # trade prices are mantissas: 100.25 is 10025 at scale 2
MINUTE_NS = 60 * 1_000_000_000
SEED_MINUTES = 600
SEED_EVERY_NS = 10 * 1_000_000_000
RATE_PER_SECOND = 200
LOAD_SECONDS = 10.0
CLIENTS = 5000
CONNECT_CONCURRENCY = 100
CLIENT_PROCESSES = 2
CONNECT_SECONDS = 30.0
DRAIN_SECONDS = 5.0
SEQUENTIAL = 50
PROBES = 15
PROBE_EVERY_SECONDS = 1.0
ADMIN = ("bench-admin", "bench-admin-password")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def _trades(
    stream: str, sequence: int, ids: list[int], prices: list[int], times: list[int]
) -> ingest_service_pb2.PublishRequest:
    """A batch of trades; `prices` are mantissas at PRICE_SCALE, each of quantity 0.5."""
    return ingest_service_pb2.PublishRequest(
        batch=market_pb2.TradeBatch(
            stream_id=stream,
            sequence=sequence,
            trades=[
                market_pb2.SymbolTrades(
                    exchange=market_pb2.EXCHANGE_SIMULATOR,
                    symbol=SYMBOL,
                    trade_ids=ids,
                    prices=prices,
                    quantities=[5] * len(ids),
                    event_time_ns=times,
                    price_scale=PRICE_SCALE,
                    quantity_scale=1,
                )
            ],
        )
    )


@dataclass
class _Mesh:
    """The running processes and how to reach them."""

    bars_address: str
    bars_metrics_url: str
    base_url: str
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    next_trade_id: int = 1


async def _wait_serving(address: str) -> None:
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            with contextlib.suppress(aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError("bar service did not start")


async def _wait_http(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError("gateway did not start")


async def _start(database_url: str, redis_url: str, logs: Path) -> _Mesh:
    common = {
        **os.environ,
        # This bench measures the HTTP/WebSocket edge; bench_bars_ingest measures what mutual
        # TLS costs inside the mesh.
        "TICKMESH_GRPC_INSECURE": "true",
        "TICKMESH_DATABASE_URL": database_url,
        "TICKMESH_REDIS_URL": redis_url,
        "TICKMESH_LOG_LEVEL": "WARNING",
        "TICKMESH_DRAIN_SECONDS": "1",
    }
    bars_address = f"127.0.0.1:{_free_port()}"
    metrics_port = _free_port()
    gateway_port = _free_port()
    mesh = _Mesh(
        bars_address,
        f"http://127.0.0.1:{metrics_port}/metrics",
        f"http://127.0.0.1:{gateway_port}",
    )
    with (logs / "bars.log").open("wb") as log:
        mesh.processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tickmesh.bars",
                env=common
                | {
                    "TICKMESH_BARS_LISTEN": bars_address,
                    "TICKMESH_BARS_METRICS_PORT": str(metrics_port),
                },
                stderr=log,
            )
        )
    await _wait_serving(bars_address)
    # The collector only serves the instrument registry here: the gateway's WebSockets serve
    # registered instruments only. No watchlist, no venue: it collects nothing.
    collector_address = f"127.0.0.1:{_free_port()}"
    with (logs / "collector.log").open("wb") as log:
        mesh.processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tickmesh.collector",
                env=common
                | {
                    "TICKMESH_COLLECTOR_LISTEN": collector_address,
                    "TICKMESH_COLLECTOR_METRICS_PORT": "0",
                    "TICKMESH_COLLECTOR_DEFAULT_WATCHLIST": "",
                    "TICKMESH_BARS_ADDRESS": bars_address,
                },
                stderr=log,
            )
        )
    await _wait_serving(collector_address)
    with (logs / "gateway.log").open("wb") as log:
        mesh.processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tickmesh.gateway",
                env=common
                | {
                    "TICKMESH_ENVIRONMENT": "test",
                    "TICKMESH_GATEWAY_PORT": str(gateway_port),
                    "TICKMESH_GATEWAY_JWT_SECRET": "bench-secret-0123456789abcdef0123456789",
                    "TICKMESH_GATEWAY_ADMIN_USERNAME": ADMIN[0],
                    "TICKMESH_GATEWAY_ADMIN_PASSWORD": ADMIN[1],
                    "TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000",
                    "TICKMESH_BARS_ADDRESS": bars_address,
                    "TICKMESH_COLLECTOR_ADDRESS": collector_address,
                    # All the bench's WebSocket clients come from one address with one user's
                    # token: the per-address and per-user WebSocket limits are raised for it.
                    "TICKMESH_GATEWAY_WS_PREAUTH_PER_IP": str(2 * CLIENTS),
                    "TICKMESH_GATEWAY_WS_CONNECTIONS_PER_USER": str(2 * CLIENTS),
                    "TICKMESH_ANALYTICS_ADDRESS": "127.0.0.1:1",
                },
                stderr=log,
            )
        )
    await _wait_http(f"{mesh.base_url}/health")
    return mesh


async def _seed(mesh: _Mesh) -> None:
    """SEED_MINUTES of trades up to now, then wait until GetBars holds at least 500 final bars."""
    now_ns = time.time_ns()
    first = (now_ns // MINUTE_NS - SEED_MINUTES) * MINUTE_NS
    times = list(range(first, now_ns, SEED_EVERY_NS))
    ids = list(range(1, len(times) + 1))
    mesh.next_trade_id = len(times) + 1
    requests = [
        _trades(
            "bench-seed",
            index // 1000 + 1,
            ids[index : index + 1000],
            [10000 + (i % 97) * 25 for i in ids[index : index + 1000]],
            times[index : index + 1000],
        )
        for index in range(0, len(times), 1000)
    ]

    async def send() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        for request in requests:
            yield request

    async with aio.insecure_channel(mesh.bars_address) as channel:
        async for response in ingest_service_pb2_grpc.IngestServiceStub(channel).Publish(send()):
            if response.acked_sequence >= requests[-1].batch.sequence:
                break
        stub = bar_service_pb2_grpc.BarServiceStub(channel)
        for _ in range(300):
            reply = await stub.GetBars(
                bar_service_pb2.GetBarsRequest(
                    instrument=market_pb2.Instrument(
                        exchange=market_pb2.EXCHANGE_SIMULATOR, symbol=SYMBOL
                    ),
                    timeframe=market_pb2.TIMEFRAME_1M,
                    limit=500,
                )
            )
            if len(reply.bars) >= 500:
                return
            await asyncio.sleep(0.1)
    raise TimeoutError("the bar service never held 500 final bars")


async def _token(mesh: _Mesh) -> str:
    """The admin's access token, after registering the bench's instrument as the admin."""
    async with httpx.AsyncClient(base_url=mesh.base_url) as client:
        reply = await client.post(
            "/api/v1/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]}
        )
        reply.raise_for_status()
        token = str(reply.json()["access_token"])
        registered = await client.post(
            "/api/v1/symbols",
            json={"exchange": "simulator", "symbol": SYMBOL, "asset_type": "crypto"},
            headers={"Authorization": f"Bearer {token}"},
        )
        registered.raise_for_status()
        return token


def _counters(page: str, name: str) -> dict[str, float]:
    """The `result` label values of one counter on a Prometheus page."""
    counts = {"hit": 0.0, "miss": 0.0}
    for line in page.splitlines():
        for result in counts:
            if line.startswith(f'{name}_total{{result="{result}"}} '):
                counts[result] = float(line.rsplit(" ", 1)[1])
    return counts


async def _cache_lookups(mesh: _Mesh) -> tuple[dict[str, float], dict[str, float]]:
    """Hits and misses of the bar service's cache and of the gateway's chart cache."""
    bars = await asyncio.to_thread(_fetch, mesh.bars_metrics_url)
    gateway = await asyncio.to_thread(_fetch, f"{mesh.base_url}/metrics")
    return (
        _counters(bars, "tickmesh_bar_cache_lookups"),
        _counters(gateway, "tickmesh_chart_cache_lookups"),
    )


def _hit_rate(before: dict[str, float], after: dict[str, float]) -> float:
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    return hits / (hits + misses) if hits + misses else float("nan")


async def load_process(
    *args: str, module: str = "bench.gateway_clients"
) -> asyncio.subprocess.Process:
    """A load-generating process (bench/gateway_clients.py by default), answering in JSON lines."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**26,
    )


async def read_answer(process: asyncio.subprocess.Process) -> dict[str, Any]:
    """The next JSON line a load-generating process prints."""
    assert process.stdout is not None
    line = await process.stdout.readline()
    if not line:
        raise RuntimeError("a load-generating process ended without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer


@dataclass
class _ChartLoad:
    """What the chart load measured: latencies in seconds, counts, the cache hit rates."""

    sequential: list[float]
    latencies: list[float]
    failures: int
    unfinished: int
    elapsed: float
    bar_hit_rate: float
    chart_hit_rate: float


async def _chart_load(mesh: _Mesh, token: str) -> _ChartLoad:
    """One client at a time first, then RATE_PER_SECOND open loop for LOAD_SECONDS."""
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/v1/charts/{INSTRUMENT}"
    params = {"limit": "500", "indicators": "false"}
    async with httpx.AsyncClient(base_url=mesh.base_url, headers=headers) as client:
        sequential = []
        for _ in range(SEQUENTIAL):  # also warms the connection and the caches
            started = time.perf_counter()
            warm = await client.get(path, params=params)
            sequential.append(time.perf_counter() - started)
            warm.raise_for_status()
            assert len(warm.json()["bars"]) == 500
    bars_before, charts_before = await _cache_lookups(mesh)
    # A separate process with a hand-written HTTP/1.1 client: the figure is the gateway's.
    load = await load_process(
        "http",
        mesh.base_url,
        f"{path}?limit=500&indicators=false",
        token,
        str(RATE_PER_SECOND),
        str(LOAD_SECONDS),
        str(DRAIN_SECONDS),
    )
    answer = await read_answer(load)
    await load.wait()
    bars_after, charts_after = await _cache_lookups(mesh)
    return _ChartLoad(
        sequential,
        [float(latency) for latency in answer["latencies"]],
        int(answer["failures"]),
        int(answer["unfinished"]),
        float(answer["elapsed"]),
        _hit_rate(bars_before, bars_after),
        _hit_rate(charts_before, charts_after),
    )


async def _fan_out(mesh: _Mesh, token: str) -> tuple[int, float, list[float], int]:
    """Clients connected, seconds to connect them, push lags (s), and probes expected in all."""
    url = mesh.base_url
    began = time.perf_counter()
    share = CLIENTS // CLIENT_PROCESSES
    processes = [
        await load_process(
            "ws",
            url,
            f"/ws/{INSTRUMENT}",
            token,
            str(share + (CLIENTS % CLIENT_PROCESSES if index == 0 else 0)),
            str(CONNECT_CONCURRENCY // CLIENT_PROCESSES),
            str(CONNECT_SECONDS),
        )
        for index in range(CLIENT_PROCESSES)
    ]
    clients = sum([int((await read_answer(process))["connected"]) for process in processes])
    connect_seconds = time.perf_counter() - began
    sent_at: dict[float, float] = {}
    queue: asyncio.Queue[ingest_service_pb2.PublishRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        while (request := await queue.get()) is not None:
            yield request

    async with aio.insecure_channel(mesh.bars_address) as channel:
        call = ingest_service_pb2_grpc.IngestServiceStub(channel).Publish(requests())
        await asyncio.sleep(PROBE_EVERY_SECONDS)
        for sequence in range(1, PROBES + 1):
            price = 5000 + sequence  # the close the clients look for: "5001", "5002", …
            trade_id = mesh.next_trade_id
            mesh.next_trade_id += 1
            sent_at[float(price)] = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
            mantissa = price * 10**PRICE_SCALE
            await queue.put(
                _trades("bench-probe", sequence, [trade_id], [mantissa], [time.time_ns()])
            )
            await asyncio.sleep(PROBE_EVERY_SECONDS)
        await asyncio.sleep(2.0)
        await queue.put(None)
        call.cancel()
    lags: list[float] = []
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"stop\n")
        await process.stdin.drain()
        for close, times in (await read_answer(process))["receipts"].items():
            if float(close) in sent_at:
                lags += [received - sent_at[float(close)] for received in times]
        await process.wait()
    return clients, connect_seconds, lags, clients * PROBES


async def _run(
    database_url: str, redis_url: str, logs: Path
) -> tuple[_ChartLoad, tuple[int, float, list[float], int]]:
    mesh = await _start(database_url, redis_url, logs)
    try:
        await _seed(mesh)
        token = await _token(mesh)
        load = await _chart_load(mesh, token)
        return load, await _fan_out(mesh, token)
    finally:
        for name in ("bars", "collector", "gateway"):
            tail = (logs / f"{name}.log").read_text(errors="replace")[-1500:]
            if tail.strip():
                sys.stderr.write(f"-- {name} log ends:\n{tail}\n")
        for process in mesh.processes:
            process.kill()
            await process.wait()


def main() -> list[Figure]:
    """Measure chart latency and cache hit rate under 200 req/s, then WebSocket push lag."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-bench-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        load, (clients, connect_seconds, lags, expected) = asyncio.run(
            _run(servers.start_postgres(), servers.start_redis(), Path(state))
        )
    ms = [1000 * latency for latency in load.latencies]
    alone = statistics.median(1000 * latency for latency in load.sequential)
    throughput = (len(ms) - load.unfinished) / load.elapsed
    lag_ms = [1000 * lag for lag in lags]
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = percentile(ms, 0.99)
    lag_p50 = statistics.median(lag_ms) if lag_ms else float("nan")
    lag_p99 = percentile(lag_ms, 0.99)
    delivered = 100 * len(lags) / expected if expected else float("nan")
    sys.stdout.write(
        f"gateway charts (limit=500) at {RATE_PER_SECOND}/s for {LOAD_SECONDS:.0f} s: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(ms) - load.unfinished} ok, {load.failures} failed, "
        f"{load.unfinished} unfinished {DRAIN_SECONDS:.0f} s after the last was sent; "
        f"{throughput:.0f} ok/s); one at a time p50 {alone:.1f} ms; "
        f"gateway chart cache hit rate {100 * load.chart_hit_rate:.2f} %, "
        f"bar service cache hit rate {100 * load.bar_hit_rate:.2f} % (of the misses' GetBars)\n"
        f"WebSocket fan-out: {clients} clients connected in {connect_seconds:.1f} s "
        f"({clients / connect_seconds:.0f}/s), {PROBES} trades at 1/s: push lag "
        f"p50 {lag_p50:.1f} ms, p99 {lag_p99:.1f} ms ({len(lags)} of {expected} "
        f"probe receipts, {delivered:.1f} %)\n"
    )
    return [
        Figure("gateway GET charts limit=500 p50 @200/s", p50, "ms"),
        Figure("gateway GET charts limit=500 p99 @200/s", p99, "ms", "<= 20 ms"),
        Figure("gateway GET charts limit=500 ok/s offered 200/s", throughput, "req/s", "200"),
        Figure("gateway GET charts limit=500 p50 one at a time", alone, "ms"),
        Figure(
            "gateway chart cache hit rate under load", 100 * load.chart_hit_rate, "%", ">= 99 %"
        ),
        Figure("WebSocket clients connected (one process)", clients, "clients", "5,000"),
        Figure("WebSocket connects per second", clients / connect_seconds, "/s"),
        Figure("WebSocket trade -> client push lag p50", lag_p50, "ms"),
        Figure("WebSocket trade -> client push lag p99", lag_p99, "ms", "<= 200 ms"),
        Figure("WebSocket probe receipts delivered", delivered, "%"),
    ]


if __name__ == "__main__":
    main()
