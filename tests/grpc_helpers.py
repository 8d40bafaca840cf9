"""Small helpers shared by the whole-process tests: free ports, waiting for health."""

from __future__ import annotations

import asyncio
import socket
import time

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dial(address: str, credentials: grpc.ChannelCredentials | None = None) -> aio.Channel:
    """A channel to `address`: TLS with `credentials`, plaintext without."""
    if credentials is None:
        return aio.insecure_channel(address)
    return aio.secure_channel(address, credentials)


async def health_status(
    address: str, service: str = "", credentials: grpc.ChannelCredentials | None = None
) -> int:
    """The health status of `service` at `address` (raises if unreachable)."""
    async with dial(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(response.status)


async def wait_serving(
    address: str,
    within_seconds: float = 30.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Wait until `address` answers SERVING (over TLS with `credentials`); TimeoutError otherwise."""
    deadline = time.monotonic() + within_seconds
    while True:
        try:
            status = await health_status(address, credentials=credentials)
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except aio.AioRpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{address} not SERVING after {within_seconds}s")
        await asyncio.sleep(0.1)
