"""Checking an ingest batch whole before any of it is applied (INVALID_ARGUMENT naming the field)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from tickmesh.bars.run_columns import runs_from_messages
from tickmesh.bars.trades import SourceBar, TradeRun, TradeRunError
from tickmesh.core.decimals import DecimalValueError
from tickmesh.core.errors import FailedPrecondition, InvalidArgument
from tickmesh.core.exchanges import LABEL_BY_PROTO
from tickmesh.core.instruments import InstrumentError, InstrumentId, check_symbol
from tickmesh.core.sharding import Shard
from tickmesh.v2 import market_pb2


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


def check_instrument(field: str, exchange: int, symbol: str, shard: Shard) -> InstrumentId:
    """The instrument of a run or source bar; InvalidArgument or FailedPrecondition naming `field`."""
    checked = _checked_instrument(exchange, symbol, shard)
    if isinstance(checked, InstrumentId):
        return checked
    error, problem = checked
    raise error(f"{field}{problem}")


# A whole-market batch names hundreds of instruments, the same ones batch after batch.
@lru_cache(maxsize=65_536)
def _checked_instrument(
    exchange: int, symbol: str, shard: Shard
) -> InstrumentId | tuple[type[InvalidArgument | FailedPrecondition], str]:
    """The instrument, or the error to raise and its text after the field's name."""
    if exchange == market_pb2.EXCHANGE_UNSPECIFIED:
        return InvalidArgument, ".exchange: unspecified"
    if exchange not in LABEL_BY_PROTO:
        return InvalidArgument, f".exchange: unknown exchange {exchange}"
    try:
        instrument = InstrumentId(exchange, check_symbol(symbol))
    except InstrumentError as error:
        return InvalidArgument, f".symbol: {error}"
    if not shard.owns(instrument):
        return FailedPrecondition, (
            f": instrument {instrument} belongs to another shard than "
            f"{shard.index} of {shard.count}"
        )
    return instrument


def check_batch(batch: market_pb2.TradeBatch, shard: Shard) -> CheckedBatch:
    """Validate and convert a batch; InvalidArgument or FailedPrecondition, nothing applied.

    Malformed runs and source bars (an unspecified exchange, a bad symbol, a scale outside
    0..18, columns that do not line up, a value that is not a plain decimal) reject the whole
    batch; suspect trades in a well-formed run (a price or quantity not above zero) are for the
    engine to quarantine.
    """
    if not batch.stream_id:
        raise InvalidArgument("batch.stream_id: required")
    if batch.sequence < 1:
        raise InvalidArgument("batch.sequence: must be 1 or more")
    for index, message in enumerate(batch.trades):
        field = f"batch.trades[{index}]"
        check_instrument(field, message.exchange, message.symbol, shard)
    try:
        runs = runs_from_messages(batch.trades)
    except TradeRunError as error:
        raise InvalidArgument(str(error)) from None
    source_bars = []
    for index, bar in enumerate(batch.source_bars):
        field = f"batch.source_bars[{index}]"
        check_instrument(field, bar.exchange, bar.symbol, shard)
        if bar.timeframe == market_pb2.TIMEFRAME_UNSPECIFIED:
            raise InvalidArgument(f"{field}.timeframe: required")
        if bar.open_time_ns <= 0:
            raise InvalidArgument(f"{field}.open_time_ns: must be a positive epoch time")
        try:
            # Not a plain decimal is a malformed message, like a bad column: the whole batch
            # is refused naming the field. A sound decimal that makes no sense as a bar (a
            # price not above zero, low above open) is quarantined by the engine instead.
            source_bars.append(SourceBar.from_proto(bar, field))
        except DecimalValueError as error:
            raise InvalidArgument(str(error)) from None
    return CheckedBatch(batch.stream_id, batch.sequence, runs, source_bars)
