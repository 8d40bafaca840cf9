/** Indicator rows by bar time: later rows for the same time replace earlier ones. */
import type { IndicatorRow } from "../api/types";
import { MAX_BARS } from "./barMerge";

export function mergeIndicators(
  rows: readonly IndicatorRow[],
  incoming: readonly IndicatorRow[],
): IndicatorRow[] {
  if (incoming.length === 0) return rows as IndicatorRow[];
  const byTime = new Map<number, IndicatorRow>();
  for (const row of rows) byTime.set(row.time, row);
  for (const row of incoming) byTime.set(row.time, row);
  const merged = [...byTime.values()].sort((a, b) => a.time - b.time);
  return merged.length > MAX_BARS ? merged.slice(merged.length - MAX_BARS) : merged;
}

export interface LinePoint {
  time: number;
  value: number;
}

/** The points of one indicator column, skipping bars where it has no value yet. */
export function indicatorLine(rows: readonly IndicatorRow[], column: string): LinePoint[] {
  const points: LinePoint[] = [];
  for (const row of rows) {
    const value = row[column];
    if (typeof value === "number" && Number.isFinite(value)) points.push({ time: row.time, value });
  }
  return points;
}
