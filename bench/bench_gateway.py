"""The gateway under load: chart latency and cache hit rate, and WebSocket fan-out push lag.

A real `python -m tickmesh.bars` and `python -m tickmesh.gateway` on embedded PostgreSQL and
Redis. The bar service first gets ten hours of synthetic trades of one symbol (600 final 1m
bars). Then (a) `GET /api/v1/charts/{symbol}?limit=500&indicators=false` at 200 requests/s,
open loop, for 10 s (goals: p99 at most 20 ms, the bar service's cache hit rate at least 99 %);
(b) up to 5,000 WebSocket clients in this one process subscribe to 1m while one trade a second
with a new price goes into the bar service; each client times the trade until it receives a
forming bar with that close (goal: p99 at most 200 ms).
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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import ClientConnection

from bench.report import Figure
from tickmesh.mesh.embedded import EmbeddedServers
from tickmesh.v1 import (
    bar_service_pb2,
    bar_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    market_pb2,
)

SYMBOL = "GWBENCHUSDT"
MINUTE_NS = 60 * 1_000_000_000
SEED_MINUTES = 600
SEED_EVERY_NS = 10 * 1_000_000_000
RATE_PER_SECOND = 200
LOAD_SECONDS = 10.0
CLIENTS = 5000
CONNECT_CONCURRENCY = 100
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


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def _trades(
    stream: str, sequence: int, ids: list[int], prices: list[float], times: list[int]
) -> ingest_service_pb2.PublishRequest:
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
                    quantities=[0.5] * len(ids),
                    event_time_ns=times,
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
                    "TICKMESH_COLLECTOR_ADDRESS": "127.0.0.1:1",
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
            [100.0 + (i % 97) * 0.25 for i in ids[index : index + 1000]],
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
                    symbol=SYMBOL, timeframe=market_pb2.TIMEFRAME_1M, limit=500
                )
            )
            if len(reply.bars) >= 500:
                return
            await asyncio.sleep(0.1)
    raise TimeoutError("the bar service never held 500 final bars")


async def _token(mesh: _Mesh) -> str:
    async with httpx.AsyncClient(base_url=mesh.base_url) as client:
        reply = await client.post(
            "/api/v1/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]}
        )
        reply.raise_for_status()
        return str(reply.json()["access_token"])


async def _cache_lookups(mesh: _Mesh) -> tuple[float, float]:
    page = await asyncio.to_thread(_fetch, mesh.bars_metrics_url)
    counts = {"hit": 0.0, "miss": 0.0}
    for line in page.splitlines():
        for result in counts:
            if line.startswith(f'tickmesh_bar_cache_lookups_total{{result="{result}"}} '):
                counts[result] = float(line.rsplit(" ", 1)[1])
    return counts["hit"], counts["miss"]


@dataclass
class _ChartLoad:
    """What the chart load measured: latencies in seconds, counts, the cache hit rate."""

    sequential: list[float]
    latencies: list[float]
    failures: int
    unfinished: int
    elapsed: float
    hit_rate: float


async def _chart_load(mesh: _Mesh, token: str) -> _ChartLoad:
    """One client at a time first, then RATE_PER_SECOND open loop for LOAD_SECONDS."""
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/v1/charts/{SYMBOL}"
    params = {"limit": "500", "indicators": "false"}
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=mesh.base_url, headers=headers, limits=limits) as client:
        sequential = []
        for _ in range(SEQUENTIAL):  # also warms the connection and the cache
            started = time.perf_counter()
            warm = await client.get(path, params=params)
            sequential.append(time.perf_counter() - started)
            warm.raise_for_status()
            assert len(warm.json()["bars"]) == 500
        hits_before, misses_before = await _cache_lookups(mesh)

        async def one(started: float) -> None:
            nonlocal failures
            try:
                reply = await client.get(path, params=params)
            except httpx.HTTPError:
                failures += 1
                return
            if reply.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

        tasks: list[asyncio.Task[None]] = []
        sent: list[float] = []
        began = time.perf_counter()
        for index in range(int(RATE_PER_SECOND * LOAD_SECONDS)):
            delay = began + index / RATE_PER_SECOND - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            tasks.append(asyncio.create_task(one(now)))
            sent.append(now)
        # A gateway that cannot keep up would queue for minutes: what is still out is unfinished.
        _, unfinished = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        ended = time.perf_counter()
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        # Counted at what they waited so far: a lower bound, so the percentiles are not flattered.
        latencies += [ended - sent[tasks.index(task)] for task in unfinished]
        elapsed = ended - began
        hits, misses = await _cache_lookups(mesh)
    hits, misses = hits - hits_before, misses - misses_before
    rate = hits / (hits + misses) if hits + misses else float("nan")
    return _ChartLoad(sequential, latencies, failures, len(unfinished), elapsed, rate)


@dataclass
class _Client:
    """One WebSocket client and the push lags it saw."""

    ws: ClientConnection
    seen: set[float] = field(default_factory=set)


async def _connect(url: str) -> _Client | None:
    try:
        ws = await websockets.connect(url, compression=None, ping_interval=None, open_timeout=20)
        await ws.send(json.dumps({"type": "subscribe", "timeframes": ["1m"]}))
        while json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] != "subscribed":
            pass
    except (OSError, TimeoutError, websockets.WebSocketException):
        return None
    return _Client(ws)


async def _read(client: _Client, sent_at: dict[float, float], lags: list[float]) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for raw in client.ws:
            received = time.perf_counter()
            message = json.loads(raw)
            if message["type"] != "bars":
                continue
            for bar in message["bars"]:
                close = bar["close"]
                if not bar["final"] and close in sent_at and close not in client.seen:
                    client.seen.add(close)
                    lags.append(received - sent_at[close])


async def _fan_out(mesh: _Mesh, token: str) -> tuple[int, list[float], int]:
    """Clients connected, push lags (s), and probes expected in all (clients x probes)."""
    url = mesh.base_url.replace("http://", "ws://") + f"/ws/{SYMBOL}?token={token}"
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> _Client | None:
        async with gate:
            return await _connect(url)

    attempts = [asyncio.create_task(connect()) for _ in range(CLIENTS)]
    done, pending = await asyncio.wait(attempts, timeout=CONNECT_SECONDS)
    for attempt in pending:
        attempt.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    clients = [client for task in done if (client := task.result()) is not None]
    sent_at: dict[float, float] = {}
    lags: list[float] = []
    readers = [asyncio.create_task(_read(client, sent_at, lags)) for client in clients]
    queue: asyncio.Queue[ingest_service_pb2.PublishRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[ingest_service_pb2.PublishRequest]:
        while (request := await queue.get()) is not None:
            yield request

    async with aio.insecure_channel(mesh.bars_address) as channel:
        call = ingest_service_pb2_grpc.IngestServiceStub(channel).Publish(requests())
        await asyncio.sleep(PROBE_EVERY_SECONDS)
        for sequence in range(1, PROBES + 1):
            price = 5000.0 + sequence
            trade_id = mesh.next_trade_id
            mesh.next_trade_id += 1
            sent_at[price] = time.perf_counter()
            await queue.put(_trades("bench-probe", sequence, [trade_id], [price], [time.time_ns()]))
            await asyncio.sleep(PROBE_EVERY_SECONDS)
        await asyncio.sleep(2.0)
        await queue.put(None)
        call.cancel()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    closing = [asyncio.create_task(client.ws.close()) for client in clients]
    await asyncio.wait(closing, timeout=10) if closing else None
    return len(clients), lags, len(clients) * PROBES


async def _run(
    database_url: str, redis_url: str, logs: Path
) -> tuple[_ChartLoad, int, list[float], int]:
    mesh = await _start(database_url, redis_url, logs)
    try:
        await _seed(mesh)
        token = await _token(mesh)
        load = await _chart_load(mesh, token)
        clients, lags, expected = await _fan_out(mesh, token)
        return load, clients, lags, expected
    finally:
        for name in ("bars", "gateway"):
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
        load, clients, lags, expected = asyncio.run(
            _run(servers.start_postgres(), servers.start_redis(), Path(state))
        )
    ms = [1000 * latency for latency in load.latencies]
    alone = statistics.median(1000 * latency for latency in load.sequential)
    throughput = (len(ms) - load.unfinished) / load.elapsed
    lag_ms = [1000 * lag for lag in lags]
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = _percentile(ms, 0.99)
    lag_p50 = statistics.median(lag_ms) if lag_ms else float("nan")
    lag_p99 = _percentile(lag_ms, 0.99)
    delivered = 100 * len(lags) / expected if expected else float("nan")
    sys.stdout.write(
        f"gateway charts (limit=500) at {RATE_PER_SECOND}/s for {LOAD_SECONDS:.0f} s: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(ms) - load.unfinished} ok, {load.failures} failed, "
        f"{load.unfinished} unfinished {DRAIN_SECONDS:.0f} s after the last was sent; "
        f"{throughput:.0f} ok/s); one at a time p50 {alone:.1f} ms; "
        f"bar cache hit rate {100 * load.hit_rate:.2f} %\n"
        f"WebSocket fan-out: {clients} clients, {PROBES} trades at 1/s: push lag "
        f"p50 {lag_p50:.1f} ms, p99 {lag_p99:.1f} ms ({len(lags)} of {expected} "
        f"probe receipts, {delivered:.1f} %)\n"
    )
    return [
        Figure("gateway GET charts limit=500 p50 @200/s", p50, "ms"),
        Figure("gateway GET charts limit=500 p99 @200/s", p99, "ms", "<= 20 ms"),
        Figure("gateway GET charts limit=500 ok/s offered 200/s", throughput, "req/s", "200"),
        Figure("gateway GET charts limit=500 p50 one at a time", alone, "ms"),
        Figure("bar cache hit rate under chart load", 100 * load.hit_rate, "%", ">= 99 %"),
        Figure("WebSocket clients connected (one process)", clients, "clients", "5,000"),
        Figure("WebSocket trade -> client push lag p50", lag_p50, "ms"),
        Figure("WebSocket trade -> client push lag p99", lag_p99, "ms", "<= 200 ms"),
        Figure("WebSocket probe receipts delivered", delivered, "%"),
    ]


if __name__ == "__main__":
    main()
