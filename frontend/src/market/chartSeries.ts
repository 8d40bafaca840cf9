/** Bars in the shapes Lightweight Charts takes (pure, so tested without a canvas). */
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
  return { time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close };
}

export function volumePoint(bar: Bar): VolumePoint {
  const color = bar.close >= bar.open ? `${UP_COLOR}80` : `${DOWN_COLOR}80`;
  return { time: bar.time, value: bar.volume, color };
}
