"""IndicatorWindow: the seed indicator set of one instrument and timeframe, updated per final bar.

Windowed indicators (SMA, Bollinger, Stochastic, volume SMA) are TA-Lib calls on the tail
of a bounded ring of bars; recursive ones (EMA, MACD, RSI, ATR, ADX) and the session VWAP
carry exact state (see recursive_state), so every value equals TA-Lib's batch result over
the whole accepted history. A revised or late bar rewinds to a per-bar state snapshot and
replays the bars after it.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, cast

import talib
from talib._ta_lib import MA_Type

from tickmesh.analytics.bars import BarInput, rejection_reason
from tickmesh.analytics.bars_window import BarWindow, FloatArray
from tickmesh.analytics.recursive_state import RecursiveState, Snapshot
from tickmesh.analytics.results import Indicators
from tickmesh.core.errors import FailedPrecondition
from tickmesh.core.instruments import InstrumentId

SMA_PERIODS = (20, 50, 100, 200)
BOLLINGER_PERIOD = 20
BOLLINGER_DEVIATIONS = 2.0
STOCH_FASTK = 14
STOCH_SLOWK = 3
STOCH_SLOWD = 3
VOLUME_SMA_PERIOD = 20
# The longest lookback is SMA 200; the rest of the ring is how far back a revision may reach.
MIN_CAPACITY = max(SMA_PERIODS)
DEFAULT_CAPACITY = 320

_STOCH_SPAN = STOCH_FASTK + STOCH_SLOWK + STOCH_SLOWD - 2
# SMA 20 is BBANDS' middle band (TA-Lib computes it the same way), so it is not called twice.
assert SMA_PERIODS[0] == BOLLINGER_PERIOD
_OWN_SMA_PERIODS = SMA_PERIODS[1:]


def _unwrapped(function: Callable[..., Any]) -> Callable[..., Any]:
    """TA-Lib's C function without the wrapper it adds when pandas or polars is importable.

    That wrapper scans every argument for a Series, ~1 us a call, six calls a bar; the
    numpy arrays here never are one.
    """
    return cast("Callable[..., Any]", getattr(function, "__wrapped__", function))


_SMA = _unwrapped(talib.SMA)
_BBANDS = _unwrapped(talib.BBANDS)
_STOCH = _unwrapped(talib.STOCH)

# One bar's indicators without its stream: the open time, then the values in field order.
_Values = tuple[int, *tuple[float | None, ...]]
# A kept bar's _Values packed: the open time, a bit per value that is None, every value as a
# double (0.0 where None). ~210 bytes where the tuple of floats took ~650; exact both ways.
_VALUE_COUNT = len(fields(Indicators)) - 3  # after instrument, timeframe and open time
_PACKED_VALUES = struct.Struct(f"=qQ{_VALUE_COUNT}d")


def _pack(values: _Values) -> bytes:
    open_time_ns, *numbers = values
    nones = sum(1 << i for i, number in enumerate(numbers) if number is None)
    return _PACKED_VALUES.pack(
        open_time_ns, nones, *(0.0 if number is None else number for number in numbers)
    )


def _unpack(packed: bytes) -> _Values:
    open_time_ns, nones, *numbers = _PACKED_VALUES.unpack(packed)
    return (
        open_time_ns,
        *(None if nones >> i & 1 else number for i, number in enumerate(numbers)),
    )


class RevisionOutOfRangeError(FailedPrecondition):
    """A revised bar is older than the ring keeps; the window must be rebuilt from storage."""


@dataclass(frozen=True, slots=True)
class IndicatorUpdate:
    """The outcome of feeding one bar: indicators for it and any later bars it caused to be replayed.

    `rejection` is set (and `indicators` empty) when the bar was unfit for indicators; the
    caller logs it with the bar's key and quality flags it. For a revision, the bars after
    the revised one are recomputed and returned too, oldest first.
    """

    indicators: tuple[Indicators, ...]
    rejection: str | None = None


def _last(values: FloatArray) -> float | None:
    value = float(values[-1])
    # NaN is the only float unequal to itself; np.isnan on a Python float costs ~0.5 us a call.
    return None if value != value else value


class IndicatorWindow:
    """Per instrument and timeframe indicator state fed one final bar at a time."""

    def __init__(
        self, instrument: InstrumentId, timeframe: int, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        if capacity < MIN_CAPACITY:
            raise ValueError(f"capacity must be at least {MIN_CAPACITY}, got {capacity}")
        self.instrument = instrument
        self.timeframe = timeframe
        self.bars = BarWindow(capacity)
        self._state = RecursiveState()
        # _before[i] is the recursive state just before bars[i]; _results[i] its indicators, as
        # the open time and values only, packed (see _pack): read back only by a rewind, and
        # bytes are no objects for the garbage collector to scan, as Indicators were.
        self._before: deque[Snapshot] = deque(maxlen=capacity)
        self._results: deque[bytes] = deque(maxlen=capacity)
        self._latest: Indicators | None = None

    def __len__(self) -> int:
        return len(self.bars)

    @property
    def latest(self) -> Indicators | None:
        """Return the indicators of the newest accepted bar, if any."""
        return self._latest

    def previous(self, offset: int = 1) -> Indicators | None:
        """Return the indicators `offset` bars before the newest, if still kept."""
        if offset >= len(self._results):
            return None
        return Indicators(self.instrument, self.timeframe, *_unpack(self._results[-1 - offset]))

    def update(self, bar: BarInput) -> IndicatorUpdate:
        """Feed a final bar (new, revised or late) and return the indicators it produced."""
        reason = rejection_reason(bar)
        replay = self.rewind(bar.open_time_ns)
        produced = [self.append(bar)] if reason is None else []
        produced.extend(
            self.append(later) for later in replay if later.open_time_ns > bar.open_time_ns
        )
        return IndicatorUpdate(tuple(produced), reason)

    def rewind(self, open_time_ns: int) -> list[BarInput]:
        """Drop the bars opening at or after `open_time_ns`, restore the state before them, return them.

        Raises RevisionOutOfRangeError when that point is older than the ring keeps.
        """
        bars = self.bars
        # The common case, a new bar after the newest, needs no search.
        if not len(bars) or open_time_ns > bars.newest_open_time_ns():
            return []
        position = bars.index_at_or_after(open_time_ns)
        if position == len(bars):
            return []
        dropped_history = self._state.count > len(self.bars)
        if position == 0 and dropped_history and open_time_ns < int(self.bars.open_time[0]):
            raise RevisionOutOfRangeError(
                f"{self.instrument}: bar at {open_time_ns} is older than the {len(self.bars)} bars kept"
            )
        self._state.restore(self._before[position])
        for _ in range(len(self.bars) - position):
            self._before.pop()
            self._results.pop()
        self._latest = self.previous(0)
        return self.bars.truncate(position)

    def append(self, bar: BarInput) -> Indicators:
        """Add an accepted bar after the newest one and return its indicators (no validation)."""
        self._before.append(self._state.snapshot())
        recursive = self._state.update(bar.open_time_ns, bar.high, bar.low, bar.close, bar.volume)
        self.bars.append(bar)
        close = self.bars.close
        count = close.shape[0]
        smas = [
            _last(_SMA(close[-period:], period)) if count >= period else None
            for period in _OWN_SMA_PERIODS
        ]
        bb_upper = bb_middle = bb_lower = None
        if count >= BOLLINGER_PERIOD:
            upper, middle, lower = _BBANDS(
                close[-BOLLINGER_PERIOD:],
                BOLLINGER_PERIOD,
                BOLLINGER_DEVIATIONS,
                BOLLINGER_DEVIATIONS,
                MA_Type.SMA,
            )
            bb_upper, bb_middle, bb_lower = _last(upper), _last(middle), _last(lower)
        stoch_k = stoch_d = None
        if count >= _STOCH_SPAN:
            slow_k, slow_d = _STOCH(
                self.bars.high[-_STOCH_SPAN:],
                self.bars.low[-_STOCH_SPAN:],
                close[-_STOCH_SPAN:],
                STOCH_FASTK,
                STOCH_SLOWK,
                MA_Type.SMA,
                STOCH_SLOWD,
                MA_Type.SMA,
            )
            stoch_k, stoch_d = _last(slow_k), _last(slow_d)
        volume_sma = None
        if count >= VOLUME_SMA_PERIOD:
            volume_sma = _last(_SMA(self.bars.volume[-VOLUME_SMA_PERIOD:], VOLUME_SMA_PERIOD))
        values: _Values = (
            bar.open_time_ns,
            recursive.rsi,
            recursive.macd,
            recursive.macd_signal,
            recursive.macd_histogram,
            bb_upper,
            bb_middle,
            bb_lower,
            bb_middle,  # SMA 20
            smas[0],
            smas[1],
            smas[2],
            recursive.ema_12,
            recursive.ema_26,
            recursive.ema_50,
            recursive.vwap,
            stoch_k,
            stoch_d,
            recursive.atr,
            recursive.adx,
            volume_sma,
        )
        self._results.append(_pack(values))
        self._latest = result = Indicators(self.instrument, self.timeframe, *values)
        return result
