"""What a dataset holds: instruments, timeframes, a half-open time range, the mode, the parts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.core.timeframes import TimeframeSpec, from_label

# A request names each series itself; more would be a typo or a job for several exports.
MAX_INSTRUMENTS = 200
_T = TypeVar("_T")


class DatasetRequestError(ValueError):
    """A dataset request that cannot be answered; the message names the bad part."""


@dataclass(frozen=True, slots=True)
class DatasetRequest:
    """Bars with open time in [start, end) of every (instrument, timeframe), joined per bar.

    `as_of` False reads the current tables ("latest"); True reads each row as it was known
    when its bar first became final (revision 0 and the first indicator and feature rows).
    """

    instruments: tuple[InstrumentId, ...]
    timeframes: tuple[TimeframeSpec, ...]
    start: datetime
    end: datetime
    as_of: bool = False
    indicators: bool = True
    features: bool = True

    @property
    def mode(self) -> str:
        """ "as_of" or "latest", as written in the file's metadata."""
        return "as_of" if self.as_of else "latest"

    def series(self) -> list[tuple[InstrumentId, TimeframeSpec]]:
        """Every (instrument, timeframe) pair, in the order rows come out."""
        return [(i, tf) for i in self.instruments for tf in self.timeframes]


def parse_time(text: str, name: str) -> datetime:
    """Read an ISO 8601 instant ("2024-08-08", "2024-08-08T12:00:00Z"); naive means UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DatasetRequestError(
            f"{name} {text!r} is not an ISO 8601 time, e.g. 2024-08-08 or 2024-08-08T12:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _unique(items: Sequence[_T]) -> tuple[_T, ...]:
    # Kept in the order given, since rows follow it; a repeat would duplicate rows.
    return tuple(dict.fromkeys(items))


def parse_request(
    instruments: Sequence[str],
    timeframes: Sequence[str],
    start: str | datetime,
    end: str | datetime,
    *,
    as_of: bool = False,
    indicators: bool = True,
    features: bool = True,
) -> DatasetRequest:
    """Validate the textual parts of a request; DatasetRequestError naming the first bad one."""
    if not instruments:
        raise DatasetRequestError("name at least one instrument, e.g. binance_usdm:BTCUSDT")
    if len(instruments) > MAX_INSTRUMENTS:
        raise DatasetRequestError(f"at most {MAX_INSTRUMENTS} instruments per dataset")
    if not timeframes:
        raise DatasetRequestError("name at least one timeframe, e.g. 1m")
    try:
        parsed_instruments = _unique([InstrumentId.parse(text) for text in instruments])
    except InstrumentError as error:
        raise DatasetRequestError(str(error)) from None
    try:
        parsed_timeframes = _unique([from_label(label) for label in timeframes])
    except ValueError as error:
        raise DatasetRequestError(str(error)) from None
    start_time = start if isinstance(start, datetime) else parse_time(start, "from")
    end_time = end if isinstance(end, datetime) else parse_time(end, "to")
    if start_time.tzinfo is None or end_time.tzinfo is None:
        raise DatasetRequestError("from and to must be timezone-aware")
    if start_time >= end_time:
        raise DatasetRequestError(
            f"from ({start_time.isoformat()}) must be before to ({end_time.isoformat()})"
        )
    return DatasetRequest(
        parsed_instruments,
        parsed_timeframes,
        start_time.astimezone(UTC),
        end_time.astimezone(UTC),
        as_of=as_of,
        indicators=indicators,
        features=features,
    )
