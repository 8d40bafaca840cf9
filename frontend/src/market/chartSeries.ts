/**
 * Bars in the shapes Lightweight Charts takes (pure, so tested without a canvas). The API's
 * values are exact decimal strings; the chart draws numbers, so they are converted here and
 * only here (a float is fine for a pixel).
 */
import type { Bar } from "../api/types";

export const UP_COLOR = "#26a69a";
export const DOWN_COLOR = "#ef5350";

export interface CandlePoint {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
}

export interface VolumePoint {
  time: number;
  value: number;
  color: string;
}

export function candlePoint(bar: Bar): CandlePoint {
  return {
    time: bar.time,
    open: Number(bar.open),
    high: Number(bar.high),
    low: Number(bar.low),
    close: Number(bar.close),
  };
}

export function volumePoint(bar: Bar): VolumePoint {
  const color = Number(bar.close) >= Number(bar.open) ? `${UP_COLOR}80` : `${DOWN_COLOR}80`;
  return { time: bar.time, value: Number(bar.volume), color };
}

export interface PriceFormat {
  precision: number;
  minMove: number;
}

const MAX_PRECISION = 10;

/** Digits after the point of an exact decimal string ("0.010" → 2, "61700" → 0). */
export function decimalPlaces(text: string): number {
  const point = text.indexOf(".");
  if (point < 0) return 0;
  return text.slice(point + 1).replace(/0+$/, "").length;
}

/**
 * How the price axis writes prices: to the venue's tick size when known ("0.1" → 1 digit,
 * steps of 0.1), else to the most digits the bars' own prices carry (at least 2).
 */
export function priceFormat(increment: string | null | undefined, bars: readonly Bar[]): PriceFormat {
  if (increment && Number(increment) > 0) {
    const precision = Math.min(decimalPlaces(increment), MAX_PRECISION);
    return { precision, minMove: Number(increment) };
  }
  let precision = 2;
  for (const bar of bars.slice(-200)) {
    for (const value of [bar.open, bar.high, bar.low, bar.close]) {
      precision = Math.max(precision, decimalPlaces(value));
    }
  }
  precision = Math.min(precision, MAX_PRECISION);
  return { precision, minMove: 10 ** -precision };
}
