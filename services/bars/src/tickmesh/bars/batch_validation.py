"""Checking an ingest batch whole before any of it is applied (INVALID_ARGUMENT naming the field)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tickmesh.bars.trades import SourceBar, TradeRun, TradeRunError
from tickmesh.core.errors import FailedPrecondition, InvalidArgument
from tickmesh.core.exchanges import LABEL_BY_PROTO
from tickmesh.core.sharding import Shard
from tickmesh.v1 import market_pb2

MAX_SYMBOL_LENGTH = 20


@dataclass(frozen=True)
class CheckedBatch:
    """A batch that passed every check, converted for the engine."""

    stream_id: str
    sequence: int
    runs: list[TradeRun]
    source_bars: list[SourceBar]

    @property
    def trade_count(self) -> int:
        """Trades in the batch."""
        return sum(len(run) for run in self.runs)


def _check_symbol(field: str, exchange: int, symbol: str, shard: Shard) -> None:
    if exchange not in LABEL_BY_PROTO:
        raise InvalidArgument(f"{field}.exchange: unknown exchange {exchange}")
    if not symbol or len(symbol) > MAX_SYMBOL_LENGTH:
        raise InvalidArgument(f"{field}.symbol: must be 1-{MAX_SYMBOL_LENGTH} characters")
    if not shard.owns(symbol):
        raise FailedPrecondition(
            f"{field}.symbol: {symbol} belongs to another shard than {shard.index} of {shard.count}"
        )


def check_batch(batch: market_pb2.TradeBatch, shard: Shard) -> CheckedBatch:
    """Validate and convert a batch; InvalidArgument or FailedPrecondition, nothing applied."""
    if not batch.stream_id:
        raise InvalidArgument("batch.stream_id: required")
    if batch.sequence < 1:
        raise InvalidArgument("batch.sequence: must be 1 or more")
    runs = []
    for index, message in enumerate(batch.trades):
        field = f"batch.trades[{index}]"
        _check_symbol(field, message.exchange, message.symbol, shard)
        try:
            run = TradeRun.from_proto(message)
        except TradeRunError as error:
            raise InvalidArgument(f"{field}: {error}") from None
        bad_times = np.flatnonzero(run.event_time_ns <= 0)
        if bad_times.size:
            raise InvalidArgument(
                f"{field}.event_time_ns[{int(bad_times[0])}]: must be a positive epoch time"
            )
        runs.append(run)
    source_bars = []
    for index, bar in enumerate(batch.source_bars):
        field = f"batch.source_bars[{index}]"
        _check_symbol(field, bar.exchange, bar.symbol, shard)
        if bar.timeframe == market_pb2.TIMEFRAME_UNSPECIFIED:
            raise InvalidArgument(f"{field}.timeframe: required")
        if bar.open_time_ns <= 0:
            raise InvalidArgument(f"{field}.open_time_ns: must be a positive epoch time")
        source_bars.append(SourceBar.from_proto(bar))
    return CheckedBatch(batch.stream_id, batch.sequence, runs, source_bars)
