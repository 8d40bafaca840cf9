"""IngestService over gRPC: batches in, acknowledgements of durable sequences out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from grpc import aio

from tickmesh.bars.bar_metrics import BarMetrics
from tickmesh.bars.ingest_pipeline import AckQueue, IngestPipeline
from tickmesh.core.errors import DomainError
from tickmesh.core.ingest_protocol import REJECTED_SEQUENCE_KEY
from tickmesh.v2 import ingest_service_pb2, ingest_service_pb2_grpc


class IngestServicer(ingest_service_pb2_grpc.IngestServiceServicer):
    """One Publish call per collector stream; applying is synchronous, acks follow commits."""

    def __init__(self, pipeline: IngestPipeline, metrics: BarMetrics) -> None:
        self._pipeline = pipeline
        self._metrics = metrics

    async def Publish(
        self,
        request_iterator: AsyncIterator[ingest_service_pb2.PublishRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[ingest_service_pb2.PublishResponse]:
        """Apply each batch as it arrives; answer with cumulative acks once they are durable."""
        acks: AckQueue = asyncio.Queue()
        streams: set[str] = set()
        reader = asyncio.create_task(self._read(request_iterator, acks, streams, context))
        waiter: asyncio.Task[tuple[str, int]] | None = None
        try:
            while True:
                waiter = asyncio.create_task(acks.get())
                done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    yield self._ack(*waiter.result())
                    continue
                reader.result()  # re-raise a rejected batch as its status code
                while not acks.empty():
                    yield self._ack(*acks.get_nowait())
                return
        finally:
            # A client that closes the call cancels this generator while it waits: both tasks
            # must be cancelled and awaited here, or asyncio logs "Task was destroyed but it is
            # pending!" for the ack waiter when it is garbage-collected.
            for task in (waiter, reader):
                if task is not None and not task.done():
                    task.cancel()
            for task in (waiter, reader):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for stream_id in streams:
                self._pipeline.close_stream(stream_id, acks)

    def _ack(self, stream_id: str, sequence: int) -> ingest_service_pb2.PublishResponse:
        self._metrics.acks.inc()
        return ingest_service_pb2.PublishResponse(stream_id=stream_id, acked_sequence=sequence)

    async def _read(
        self,
        requests: AsyncIterator[ingest_service_pb2.PublishRequest],
        acks: AckQueue,
        streams: set[str],
        context: aio.ServicerContext,
    ) -> None:
        async for request in requests:
            batch = request.batch
            if batch.stream_id and batch.stream_id not in streams:
                streams.add(batch.stream_id)
                self._pipeline.open_stream(batch.stream_id, acks)
            try:
                self._pipeline.apply(batch)
            except DomainError:
                # Name the batch, so the collector sets it aside instead of resending it forever.
                context.set_trailing_metadata(((REJECTED_SEQUENCE_KEY, str(batch.sequence)),))
                raise
        # The client closed its side: wait for the remaining acks (a commit every few
        # milliseconds), then end the call.
        while self._pipeline.has_unacked(streams):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
