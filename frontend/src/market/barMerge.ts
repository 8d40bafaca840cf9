/**
 * How live bars and REST history become one candle series: pure functions, no I/O.
 *
 * A series holds at most one bar per open time, oldest first. Versions of the same bar
 * are ordered: any forming version < the final version (revision 0) < revision 1 < ...;
 * a bar is only ever replaced by a version at least as new. Because of that order,
 * live updates and history can arrive in any interleaving (history fetched after a
 * reconnect, live bars buffered before it) and the result is the same: no hole where
 * either source has a bar, no duplicate time.
 */
import type { Bar } from "../api/types";

export type BarChange =
  /** Nothing to redraw (a stale or identical version). */
  | { kind: "none" }
  /** A new newest bar. */
  | { kind: "append"; bar: Bar }
  /** The bar with this open time was replaced (forming moved, settled or revised). */
  | { kind: "replace"; bar: Bar }
  /** The series changed in the middle or was rebuilt: redraw it whole. */
  | { kind: "reset" };

export interface MergeResult {
  bars: Bar[];
  change: BarChange;
  /** The new newest bar opens more than one timeframe after the previous one. */
  gap: boolean;
}

/** Bars kept in memory per series; trimmed back to `TRIM_TO` when exceeded. */
export const MAX_BARS = 3000;
export const TRIM_TO = 2500;

/** True when `incoming` is a version of the same bar at least as new as `existing`. */
export function supersedes(incoming: Bar, existing: Bar): boolean {
  if (incoming.final !== existing.final) return incoming.final;
  if (incoming.final) return incoming.revision >= existing.revision;
  return true; // two forming versions: the later message is the later state
}

/** Index of the bar opening at `time`, or -(insertion point) - 1 when absent. */
export function findBar(bars: readonly Bar[], time: number): number {
  let low = 0;
  let high = bars.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const probe = bars[middle]!.time;
    if (probe === time) return middle;
    if (probe < time) low = middle + 1;
    else high = middle - 1;
  }
  return -low - 1;
}

function sameBar(a: Bar, b: Bar): boolean {
  return (
    a.time === b.time &&
    a.open === b.open &&
    a.high === b.high &&
    a.low === b.low &&
    a.close === b.close &&
    a.volume === b.volume &&
    a.final === b.final &&
    a.revision === b.revision
  );
}

function trimmed(bars: Bar[], change: BarChange, gap: boolean): MergeResult {
  if (bars.length <= MAX_BARS) return { bars, change, gap };
  return { bars: bars.slice(bars.length - TRIM_TO), change: { kind: "reset" }, gap };
}

/** Apply one live bar (forming, final or a revision) to a series. */
export function applyLiveBar(
  bars: readonly Bar[],
  bar: Bar,
  timeframeSeconds: number,
): MergeResult {
  const unchanged: MergeResult = { bars: bars as Bar[], change: { kind: "none" }, gap: false };
  const last = bars[bars.length - 1];
  if (last === undefined || bar.time > last.time) {
    const gap = last !== undefined && bar.time - last.time > timeframeSeconds;
    return trimmed([...bars, bar], { kind: "append", bar }, gap);
  }
  const index = findBar(bars, bar.time);
  if (index < 0) {
    // An older bar we never had: only a final version can fill it (a forming bar is
    // always the newest one, so an old forming version is stale).
    if (!bar.final) return unchanged;
    const at = -index - 1;
    return trimmed([...bars.slice(0, at), bar, ...bars.slice(at)], { kind: "reset" }, false);
  }
  const existing = bars[index]!;
  if (!bar.final && index !== bars.length - 1) return unchanged;
  if (!supersedes(bar, existing) || sameBar(bar, existing)) return unchanged;
  const next = bars.slice();
  next[index] = bar;
  return { bars: next, change: { kind: "replace", bar }, gap: false };
}

/**
 * Merge REST history (the latest final bars, oldest first) into what the series holds,
 * e.g. after a (re)connect: per open time the newest version wins; a forming bar survives
 * only as the newest bar of all. History is the truth from its first bar on; held bars
 * older than that are dropped, since an outage longer than the history window would
 * otherwise leave a hole between them and the history.
 */
export function mergeHistory(bars: readonly Bar[], history: readonly Bar[]): Bar[] {
  const byTime = new Map<number, Bar>();
  for (const bar of history) {
    const existing = byTime.get(bar.time);
    if (existing === undefined || supersedes(bar, existing)) byTime.set(bar.time, bar);
  }
  const windowStart = history.length > 0 ? Math.min(...history.map((bar) => bar.time)) : -Infinity;
  for (const bar of bars) {
    if (bar.time < windowStart) continue;
    const existing = byTime.get(bar.time);
    if (existing === undefined || supersedes(bar, existing)) byTime.set(bar.time, bar);
  }
  const merged = [...byTime.values()].sort((a, b) => a.time - b.time);
  // A forming bar older than the newest bar missed its final version: drop it, the
  // history re-read that follows brings the final one.
  const result = merged.filter((bar, index) => bar.final || index === merged.length - 1);
  return result.length > MAX_BARS ? result.slice(result.length - TRIM_TO) : result;
}

/** Open times where a bar is missing between the first and the last bar. */
export function findHoles(bars: readonly Bar[], timeframeSeconds: number): number[] {
  const holes: number[] = [];
  for (let index = 1; index < bars.length; index += 1) {
    for (
      let time = bars[index - 1]!.time + timeframeSeconds;
      time < bars[index]!.time;
      time += timeframeSeconds
    ) {
      holes.push(time);
    }
  }
  return holes;
}

/** Open times that occur more than once (always empty for a merged series). */
export function findDuplicates(bars: readonly Bar[]): number[] {
  const seen = new Set<number>();
  const duplicates: number[] = [];
  for (const bar of bars) {
    if (seen.has(bar.time)) duplicates.push(bar.time);
    seen.add(bar.time);
  }
  return duplicates;
}
