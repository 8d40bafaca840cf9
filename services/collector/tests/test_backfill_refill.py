"""A refilled REST page that a full ingest buffer drops at once stays a recorded gap."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tickmesh.collector.binance.backfill import Backfiller
from tickmesh.collector.binance.gap_book import GapBook
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.v2 import market_pb2

SPOT = market_pb2.EXCHANGE_BINANCE_SPOT


def _run(first: int, last: int) -> market_pb2.SymbolTrades:
    ids = list(range(first, last + 1))
    return market_pb2.SymbolTrades(
        exchange=SPOT,
        symbol="ETHUSDT",
        trade_ids=ids,
        prices=[100] * len(ids),
        quantities=[1] * len(ids),
        sides=[market_pb2.AGGRESSOR_SIDE_BUY] * len(ids),
        event_time_ns=[trade_id * 1_000_000 for trade_id in ids],
        receive_time_ns=[trade_id * 1_000_000 for trade_id in ids],
    )


class _Pages:
    """A REST venue holding every trade id from 1 on."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    async def fetch(self, symbol: str, from_id: int, limit: int) -> market_pb2.SymbolTrades:
        """Trades from_id..from_id+limit-1."""
        self.requests.append(from_id)
        return _run(from_id, from_id + limit - 1)


async def test_page_dropped_by_its_own_submit_is_fetched_again() -> None:
    metrics = CollectorMetrics(CollectorRegistry())
    gaps = GapBook(metrics)
    # Nothing is sent (no bar service): the buffer of 150 trades overflows on the page's submit.
    ingest = IngestClient(
        IngestConfig("localhost:1", "unit", max_buffered_trades=150),
        metrics,
        on_dropped=gaps.reopen_dropped,
    )
    pages = _Pages()
    backfill = Backfiller(SPOT, pages, gaps, ingest, metrics, grace_s=0.0, page_size=200)
    for run in (_run(1, 10), _run(211, 220)):
        fresh = gaps.deliver(run)
        assert fresh is not None
        ingest.submit([fresh])
    tracker = gaps.tracker(SPOT, "ETHUSDT")
    assert [(gap.first, gap.last) for gap in tracker.gaps] == [(11, 210)]

    assert await backfill.fill_page("ETHUSDT", 11) == 200

    # The page and both live runs were dropped unsent: all 220 ids are missing again.
    assert ingest.dropped_trades == 220
    assert ingest.buffered_trades == 0
    assert [(gap.first, gap.last) for gap in tracker.gaps] == [(1, 220)]
    assert gaps.due(SPOT, grace_s=0.0) == [("ETHUSDT", 1)]
