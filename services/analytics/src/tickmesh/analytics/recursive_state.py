"""Exact per-bar state of TA-Lib's recursive indicators (EMA, MACD, RSI, ATR, ADX) and the session VWAP.

Each update repeats, operation for operation, what TA-Lib's batch functions do at the
same bar when run over the whole series from its first bar (default compatibility,
no unstable period): the same seeds (a plain mean over the first bars), the same
Wilder smoothing and the same zero guards. That lets a window keep only a bounded
ring of bars and still equal `talib.X(full_history)` at every bar.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NS_PER_DAY = 86_400 * 1_000_000_000

# TA-Lib's TA_EPSILON: RSI and ADX treat a denominator inside (-eps, eps) as zero.
_TA_EPSILON = 1e-14

RSI_PERIOD = 14
ATR_PERIOD = 14
ADX_PERIOD = 14
MACD_FAST = 12
MACD_SLOW = 26
MACD_SIGNAL = 9
EMA_PERIODS = (12, 26, 50)

# RecursiveState.snapshot(): the bar count, the session day and every float, in a fixed order,
# packed: a window keeps one per bar, and 26 float objects in a tuple took ~890 bytes, the
# packed doubles 241 (exact either way).
Snapshot = tuple[int, int, bytes]
_FLOATS = struct.Struct("=26d")


def _is_zero(value: float) -> bool:
    return -_TA_EPSILON < value < _TA_EPSILON


def _true_range(high: float, low: float, previous_close: float) -> float:
    # TA-Lib's TRUE_RANGE macro: the widest of H-L, |H-prevC|, |L-prevC|, compared in this order.
    out = high - low
    candidate = abs(high - previous_close)
    if candidate > out:
        out = candidate
    candidate = abs(low - previous_close)
    if candidate > out:
        out = candidate
    return out


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and one is made per bar.
@dataclass(slots=True)
class RecursiveValues:
    """The recursive indicators after one bar; None during each one's warm-up."""

    rsi: float | None
    macd: float | None
    macd_signal: float | None
    macd_histogram: float | None
    ema_12: float | None
    ema_26: float | None
    ema_50: float | None
    atr: float | None
    adx: float | None
    vwap: float | None


class _Ema:
    """TA-Lib EMA seeded with the mean of its first `period` inputs, counted from `first_index`."""

    __slots__ = ("first_index", "k", "period", "sum", "value")

    def __init__(self, period: int, first_index: int = 0) -> None:
        self.period = period
        self.first_index = first_index
        self.k = 2.0 / (period + 1)
        self.sum = 0.0
        self.value = 0.0

    def update(self, index: int, x: float) -> float | None:
        """Feed the input at series position `index`; return the EMA once seeded."""
        seed_end = self.first_index + self.period - 1
        if index < self.first_index:
            return None
        if index < seed_end:
            self.sum += x
            return None
        if index == seed_end:
            self.sum += x
            self.value = self.sum / self.period
            return self.value
        self.value = ((x - self.value) * self.k) + self.value
        return self.value


class RecursiveState:
    """Everything TA-Lib carries from bar to bar for the recursive indicators of one series."""

    __slots__ = (
        "adx",
        "atr",
        "atr_sum",
        "count",
        "dx_sum",
        "emas",
        "gain",
        "loss",
        "macd_fast",
        "macd_signal",
        "macd_slow",
        "minus_dm",
        "plus_dm",
        "previous_close",
        "previous_high",
        "previous_low",
        "session_day",
        "session_pv",
        "session_volume",
        "smoothed_tr",
    )

    def __init__(self) -> None:
        self.count = 0
        self.emas = tuple(_Ema(period) for period in EMA_PERIODS)
        self.macd_slow = _Ema(MACD_SLOW)
        # TA-Lib aligns MACD's fast EMA to end its seed where the slow one does.
        self.macd_fast = _Ema(MACD_FAST, MACD_SLOW - MACD_FAST)
        self.macd_signal = _Ema(MACD_SIGNAL, MACD_SLOW - 1)
        self.gain = 0.0
        self.loss = 0.0
        self.atr_sum = 0.0
        self.atr = 0.0
        self.plus_dm = 0.0
        self.minus_dm = 0.0
        self.smoothed_tr = 0.0
        self.dx_sum = 0.0
        self.adx = 0.0
        self.previous_close = 0.0
        self.previous_high = 0.0
        self.previous_low = 0.0
        self.session_day = -1
        self.session_pv = 0.0
        self.session_volume = 0.0

    def snapshot(self) -> Snapshot:
        """Return the mutable state as plain numbers (the snapshot kept to replay from a revised bar).

        Plain numbers are objects the garbage collector does not track, where a cloned object
        graph was six tracked objects per kept bar that every full GC pass scanned.
        """
        emas = self.emas
        return (
            self.count,
            self.session_day,
            _FLOATS.pack(
                self.gain,
                self.loss,
                self.atr_sum,
                self.atr,
                self.plus_dm,
                self.minus_dm,
                self.smoothed_tr,
                self.dx_sum,
                self.adx,
                self.previous_close,
                self.previous_high,
                self.previous_low,
                self.session_pv,
                self.session_volume,
                emas[0].sum,
                emas[0].value,
                emas[1].sum,
                emas[1].value,
                emas[2].sum,
                emas[2].value,
                self.macd_slow.sum,
                self.macd_slow.value,
                self.macd_fast.sum,
                self.macd_fast.value,
                self.macd_signal.sum,
                self.macd_signal.value,
            ),
        )

    def restore(self, snapshot: Snapshot) -> None:
        """Return to the state a `snapshot` was taken in."""
        emas = self.emas
        self.count, self.session_day, packed = snapshot
        (
            self.gain,
            self.loss,
            self.atr_sum,
            self.atr,
            self.plus_dm,
            self.minus_dm,
            self.smoothed_tr,
            self.dx_sum,
            self.adx,
            self.previous_close,
            self.previous_high,
            self.previous_low,
            self.session_pv,
            self.session_volume,
            emas[0].sum,
            emas[0].value,
            emas[1].sum,
            emas[1].value,
            emas[2].sum,
            emas[2].value,
            self.macd_slow.sum,
            self.macd_slow.value,
            self.macd_fast.sum,
            self.macd_fast.value,
            self.macd_signal.sum,
            self.macd_signal.value,
        ) = _FLOATS.unpack(packed)

    def update(
        self, open_time_ns: int, high: float, low: float, close: float, volume: float
    ) -> RecursiveValues:
        """Advance by one accepted bar and return the recursive indicators at it."""
        index = self.count
        ema_12, ema_26, ema_50 = (ema.update(index, close) for ema in self.emas)
        macd, signal, histogram = self._macd(index, close)
        rsi = self._rsi(index, close)
        atr = self._atr(index, high, low)
        adx = self._adx(index, high, low)
        vwap = self._vwap(open_time_ns, high, low, close, volume)
        self.previous_close = close
        self.previous_high = high
        self.previous_low = low
        self.count = index + 1
        return RecursiveValues(rsi, macd, signal, histogram, ema_12, ema_26, ema_50, atr, adx, vwap)

    def _macd(self, index: int, close: float) -> tuple[float | None, float | None, float | None]:
        slow = self.macd_slow.update(index, close)
        fast = self.macd_fast.update(index, close)
        if slow is None or fast is None:
            return None, None, None
        line = fast - slow
        signal = self.macd_signal.update(index, line)
        if signal is None:
            # TA-Lib outputs nothing (not even the line) until the signal is seeded.
            return None, None, None
        return line, signal, line - signal

    def _rsi(self, index: int, close: float) -> float | None:
        if index == 0:
            return None
        change = close - self.previous_close
        period = RSI_PERIOD
        if index <= period:
            if change < 0:
                self.loss -= change
            else:
                self.gain += change
            if index < period:
                return None
            self.loss /= period
            self.gain /= period
        else:
            self.loss *= period - 1
            self.gain *= period - 1
            if change < 0:
                self.loss -= change
            else:
                self.gain += change
            self.loss /= period
            self.gain /= period
        total = self.gain + self.loss
        return 0.0 if _is_zero(total) else 100.0 * (self.gain / total)

    def _atr(self, index: int, high: float, low: float) -> float | None:
        if index == 0:
            return None
        true_range = _true_range(high, low, self.previous_close)
        period = ATR_PERIOD
        if index < period:
            self.atr_sum += true_range
            return None
        if index == period:
            self.atr_sum += true_range
            self.atr = self.atr_sum / period
            return self.atr
        self.atr = ((self.atr * (period - 1)) + true_range) / period
        return self.atr

    def _adx(self, index: int, high: float, low: float) -> float | None:
        if index == 0:
            return None
        period = ADX_PERIOD
        diff_plus = high - self.previous_high
        diff_minus = self.previous_low - low
        true_range = _true_range(high, low, self.previous_close)
        if index < period:
            self._add_dm(diff_plus, diff_minus)
            self.smoothed_tr += true_range
            return None
        self.minus_dm -= self.minus_dm / period
        self.plus_dm -= self.plus_dm / period
        self._add_dm(diff_plus, diff_minus)
        self.smoothed_tr = self.smoothed_tr - (self.smoothed_tr / period) + true_range
        dx = self._dx()
        if index < 2 * period - 1:
            if dx is not None:
                self.dx_sum += dx
            return None
        if index == 2 * period - 1:
            if dx is not None:
                self.dx_sum += dx
            self.adx = self.dx_sum / period
            return self.adx
        if dx is not None:
            self.adx = ((self.adx * (period - 1)) + dx) / period
        return self.adx

    def _add_dm(self, diff_plus: float, diff_minus: float) -> None:
        if diff_minus > 0 and diff_plus < diff_minus:
            self.minus_dm += diff_minus
        elif diff_plus > 0 and diff_plus > diff_minus:
            self.plus_dm += diff_plus

    def _dx(self) -> float | None:
        if _is_zero(self.smoothed_tr):
            return None
        minus_di = 100.0 * (self.minus_dm / self.smoothed_tr)
        plus_di = 100.0 * (self.plus_dm / self.smoothed_tr)
        total = minus_di + plus_di
        if _is_zero(total):
            return None
        return 100.0 * (abs(minus_di - plus_di) / total)

    def _vwap(
        self, open_time_ns: int, high: float, low: float, close: float, volume: float
    ) -> float | None:
        # Session VWAP over the UTC day: sum(typical price * volume) / sum(volume), with the
        # typical price (H+L+C)/3 standing in for the bar's unknown trade prices.
        day = open_time_ns // NS_PER_DAY
        if day != self.session_day:
            self.session_day = day
            self.session_pv = 0.0
            self.session_volume = 0.0
        self.session_pv += ((high + low + close) / 3.0) * volume
        self.session_volume += volume
        if self.session_volume <= 0.0:
            return None
        return self.session_pv / self.session_volume
