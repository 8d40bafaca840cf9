"""The ingest client survives a bar service that ends the call while batches are being written.

A real grpc.aio IngestService on loopback aborts its first calls after one request, while
the client still has hundreds of batches to write: a write after the call ended must count
as a failed session (reconnect and resend), never end the client. The later calls
acknowledge each sequence, and every submitted trade must be acknowledged exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from grpc import aio
from prometheus_client import CollectorRegistry

from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.v2 import ingest_service_pb2, ingest_service_pb2_grpc, market_pb2

from .synthetic_runs import flat_run

RUNS = 400
TRADES_PER_RUN = 10


class AbortingIngest(ingest_service_pb2_grpc.IngestServiceServicer):
    """Aborts the first `aborts` calls after one request; then acks every sequence once."""

    def __init__(self, aborts: int) -> None:
        self.aborts = aborts
        self.applied: dict[int, int] = {}

    async def Publish(
        self,
        request_iterator: AsyncIterator[ingest_service_pb2.PublishRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[ingest_service_pb2.PublishResponse]:
        """Abort early while `aborts` lasts; otherwise apply and ack in order."""
        if self.aborts > 0:
            self.aborts -= 1
            await request_iterator.__anext__()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        async for request in request_iterator:
            batch = request.batch
            trades = sum(len(run.trade_ids) for run in batch.trades)
            self.applied.setdefault(batch.sequence, trades)
            yield ingest_service_pb2.PublishResponse(
                stream_id=batch.stream_id, acked_sequence=batch.sequence
            )


def _run(first_id: int) -> market_pb2.SymbolTrades:
    return flat_run("ETHUSDT", list(range(first_id, first_id + TRADES_PER_RUN)))


async def test_call_ended_mid_write_reconnects_and_delivers_everything_once() -> None:
    servicer = AbortingIngest(aborts=3)
    server = aio.server()
    ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    metrics = CollectorMetrics(CollectorRegistry())
    client = IngestClient(
        IngestConfig(
            address=f"127.0.0.1:{port}",
            stream_id="reconnect-test",
            max_batch_trades=TRADES_PER_RUN,
            max_batch_delay_s=0.0,
            reconnect_initial_s=0.01,
            reconnect_max_s=0.05,
        ),
        metrics,
    )
    # Everything is queued before the first call, so the client writes batch after batch
    # into a call the server has already ended.
    client.submit(_run(i * TRADES_PER_RUN) for i in range(RUNS))
    runner = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(30):
            await client.flush()
        assert not runner.done(), runner
        assert servicer.aborts == 0
        assert metrics.ingest_reconnects._value.get() >= 3
        assert sorted(servicer.applied) == list(range(1, RUNS + 1))
        assert sum(servicer.applied.values()) == RUNS * TRADES_PER_RUN
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await server.stop(None)
