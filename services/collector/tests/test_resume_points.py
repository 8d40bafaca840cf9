"""Durable marks: below every recorded gap, open tail and buffered trade; saved to and restored from Redis."""

from __future__ import annotations

import secrets

import numpy as np
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.collector.resume_points import ResumePoints
from tickmesh.v2 import market_pb2

from .synthetic_runs import flat_run

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT


def _parts(redis_client: redis.Redis, stream_id: str) -> tuple[GapBook, IngestClient, ResumePoints]:
    metrics = CollectorMetrics(CollectorRegistry())
    gaps = GapBook(metrics)
    ingest = IngestClient(IngestConfig(address="127.0.0.1:1", stream_id=stream_id), metrics)
    return gaps, ingest, ResumePoints(redis_client, stream_id, gaps, ingest, metrics)


def _deliver(gaps: GapBook, ingest: IngestClient, run: market_pb2.SymbolTrades) -> None:
    """What a source does: the gap book filters the run, the ingest client buffers it."""
    fresh = gaps.deliver(run)
    if fresh is not None:
        ingest.submit([fresh])


def _ack_everything(ingest: IngestClient) -> None:
    """Form the buffered trades into batches and acknowledge them, as the bar service would."""
    formed = ingest._form_batches()
    ingest._apply_ack(formed[-1].request.batch.sequence)


async def test_mark_stays_below_gaps_tails_and_buffered_trades(redis_client: redis.Redis) -> None:
    gaps, ingest, points = _parts(redis_client, f"resume-{secrets.token_hex(4)}")
    _deliver(gaps, ingest, flat_run("AAA", list(range(100, 110))))  # delivered, all still buffered
    assert points.durable_marks() == {(SPOT, "AAA"): 99}
    _ack_everything(ingest)
    assert points.durable_marks() == {(SPOT, "AAA"): 109}
    _deliver(gaps, ingest, flat_run("AAA", [115, 116]))  # ids 110..114 now a recorded gap
    _ack_everything(ingest)
    assert points.durable_marks() == {(SPOT, "AAA"): 109}
    gaps.tracker(SPOT, "AAA").resolve(110, 114)
    assert points.durable_marks() == {(SPOT, "AAA"): 116}
    gaps.start_tails(SPOT, ["AAA"])  # a reconnect: ids after 116 may have been missed
    _deliver(gaps, ingest, flat_run("AAA", [130]))
    _ack_everything(ingest)
    assert points.durable_marks() == {(SPOT, "AAA"): 116}


async def test_saved_marks_restart_the_tracker_with_a_tail_to_backfill(
    redis_client: redis.Redis,
) -> None:
    stream_id = f"resume-{secrets.token_hex(4)}"
    gaps, ingest, points = _parts(redis_client, stream_id)
    _deliver(gaps, ingest, flat_run("BBB", list(range(1, 51))))
    _ack_everything(ingest)
    await points.save()

    restarted_gaps, _, restarted = _parts(redis_client, stream_id)
    assert await restarted.restore([(SPOT, "BBB"), (SPOT, "CCC")]) == 1
    tracker = restarted_gaps.tracker(SPOT, "BBB")
    assert (tracker.high, tracker.tail_from) == (50, 51)
    assert restarted_gaps.due(SPOT, grace_s=0.0) == [("BBB", 51)]
    # What was durable already is not delivered twice from this process.
    keep, _ = tracker.accept(np.array([50, 51], dtype=np.int64))
    assert keep is not None
    assert keep.tolist() == [False, True]
