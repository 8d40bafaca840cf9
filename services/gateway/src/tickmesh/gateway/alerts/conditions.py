"""Alert conditions on an instrument's final bars: pure functions of recent history, no I/O.

Prices arrive as exact decimal strings; conditions compare their float values with a float
threshold (a judgement, like an indicator), while messages quote the exact close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tickmesh.gateway.schemas import AlertOut

VOLUME_AVERAGE_BARS = 20


@dataclass(frozen=True, slots=True)
class MacdPoint:
    """MACD line and signal of one bar (None while too little history)."""

    macd: float | None
    signal: float | None


@dataclass(frozen=True, slots=True)
class History:
    """Final bars up to and including the current one, oldest first, plus its indicators."""

    closes: Sequence[float]
    volumes: Sequence[float]
    rsi: float | None = None
    macd: Sequence[MacdPoint] = ()
    # The current bar's exact close and volume ("61700.8"), quoted in messages when known.
    close_text: str | None = None
    volume_text: str | None = None


@dataclass(frozen=True, slots=True)
class Firing:
    """A condition that holds: the value that triggered it and a sentence saying so."""

    value: float
    message: str


def _crossed(previous: float, current: float, level: float, direction: str) -> str | None:
    if previous < level <= current and direction in ("up", "any"):
        return "up"
    if previous > level >= current and direction in ("down", "any"):
        return "down"
    return None


def _macd_cross(points: Sequence[MacdPoint], direction: str) -> Firing | None:
    if len(points) < 2:
        return None
    before_macd, before_signal = points[-2].macd, points[-2].signal
    macd, signal = points[-1].macd, points[-1].signal
    if before_macd is None or before_signal is None or macd is None or signal is None:
        return None
    way = _crossed(before_macd - before_signal, macd - signal, 0.0, direction)
    if way is None:
        return None
    kind = "bullish" if way == "up" else "bearish"
    return Firing(macd, f"MACD crossed {way} through its signal ({kind})")


def evaluate(alert: AlertOut, history: History) -> Firing | None:
    """The firing of `alert` on the latest bar of `history`, or None."""
    if not history.closes:
        return None
    close = history.closes[-1]
    shown = history.close_text if history.close_text is not None else f"{close:g}"
    level = alert.threshold
    symbol = alert.instrument
    match alert.condition:
        case "price_above":
            if close > level:
                return Firing(close, f"{symbol} closed at {shown}, above {level:g}")
        case "price_below":
            if close < level:
                return Firing(close, f"{symbol} closed at {shown}, below {level:g}")
        case "price_crossing":
            if len(history.closes) >= 2:
                way = _crossed(history.closes[-2], close, level, alert.direction)
                if way is not None:
                    return Firing(close, f"{symbol} crossed {way} through {level:g} at {shown}")
        case "percent_change":
            if len(history.closes) > alert.lookback_bars:
                base = history.closes[-1 - alert.lookback_bars]
                if base > 0:
                    change = (close - base) / base * 100
                    if abs(change) >= level:
                        return Firing(
                            change,
                            f"{symbol} moved {change:+.2f}% over {alert.lookback_bars} bar(s)",
                        )
        case "rsi_above" | "rsi_below":
            rsi = history.rsi
            above = alert.condition == "rsi_above"
            if rsi is not None and (rsi > level if above else rsi < level):
                side = "above" if above else "below"
                return Firing(rsi, f"{symbol} RSI {rsi:.1f} is {side} {level:g}")
        case "macd_cross":
            return _macd_cross(history.macd, alert.direction)
        case "volume_spike":
            past = history.volumes[-1 - VOLUME_AVERAGE_BARS : -1]
            if len(past) == VOLUME_AVERAGE_BARS:
                average = sum(past) / len(past)
                volume = history.volumes[-1]
                if average > 0 and volume >= level * average:
                    quoted = history.volume_text or f"{volume:g}"
                    return Firing(
                        volume,
                        f"{symbol} volume {quoted} is {volume / average:.1f}x its 20-bar average",
                    )
    return None
