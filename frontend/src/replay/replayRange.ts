/**
 * A replay's range and speed, as the form edits them and the address names them:
 * `?mode=replay&from=2024-08-08T00:00:00Z&to=2024-08-08T01:00:00Z&speed=60`.
 * Times are UTC ISO strings throughout; the form's inputs show them in UTC too, so a shared
 * link opens the same range wherever it is read.
 */

export const REPLAY_SPEEDS = ["1", "10", "60", "max"] as const;
export type ReplaySpeed = (typeof REPLAY_SPEEDS)[number];

export interface ReplayRange {
  from: string;
  to: string;
  speed: ReplaySpeed;
}

/** The longest range one replay may cover: a browser holds a few thousand bars at most. */
export const MAX_RANGE_MS = 31 * 24 * 3600 * 1000;

export function isReplaySpeed(value: string): value is ReplaySpeed {
  return (REPLAY_SPEEDS as readonly string[]).includes(value);
}

/** The speed as the replay socket takes it: a multiple of real time, or "max". */
export function speedMessageValue(speed: ReplaySpeed): number | "max" {
  return speed === "max" ? "max" : Number(speed);
}

export function speedLabel(speed: ReplaySpeed): string {
  return speed === "max" ? "max" : `${speed}×`;
}

/** A time in ISO form normalised to whole seconds in UTC, or null when unreadable. */
export function normaliseTime(text: string): string | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  const millis = /^\d+$/.test(trimmed) ? Number(trimmed) : Date.parse(withZone(trimmed));
  if (!Number.isFinite(millis)) return null;
  return new Date(Math.floor(millis / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

function withZone(text: string): string {
  // A time without a zone is UTC here (as the gateway reads it), not the browser's zone.
  return /[zZ]|[+-]\d\d:?\d\d$/.test(text) || !text.includes("T") ? text : `${text}Z`;
}

/** What is wrong with a range (null when it can be played). */
export function rangeProblem(range: ReplayRange, nowMs: number = Date.now()): string | null {
  const from = Date.parse(range.from);
  const to = Date.parse(range.to);
  if (!Number.isFinite(from)) return "Pick when the replay starts.";
  if (!Number.isFinite(to)) return "Pick when the replay ends.";
  if (from >= to) return "The start must be before the end.";
  if (from > nowMs) return "The start is in the future: there is nothing to replay yet.";
  if (to - from > MAX_RANGE_MS) return "A replay covers at most 31 days.";
  return null;
}

/** The default range: the hour before `nowMs`, whole minutes, at 60×. */
export function defaultRange(nowMs: number = Date.now()): ReplayRange {
  const end = Math.floor(nowMs / 60_000) * 60_000;
  return {
    from: new Date(end - 3600_000).toISOString().replace(".000Z", "Z"),
    to: new Date(end).toISOString().replace(".000Z", "Z"),
    speed: "60",
  };
}

/** The value of a datetime-local input (UTC wall time, to the minute) for an ISO time. */
export function inputValue(iso: string): string {
  const millis = Date.parse(iso);
  return Number.isFinite(millis) ? new Date(millis).toISOString().slice(0, 16) : "";
}

/** The range a query string names, when it asks for replay mode; null otherwise. */
export function readReplayAddress(search: string): ReplayRange | null {
  const params = new URLSearchParams(search);
  if (params.get("mode") !== "replay") return null;
  const fallback = defaultRange();
  const from = normaliseTime(params.get("from") ?? "") ?? fallback.from;
  const to = normaliseTime(params.get("to") ?? "") ?? fallback.to;
  const speed = params.get("speed") ?? "";
  return { from, to, speed: isReplaySpeed(speed) ? speed : fallback.speed };
}

/** The query string with the replay mode and range set (or, for null, removed). */
export function writeReplayAddress(search: string, range: ReplayRange | null): string {
  const params = new URLSearchParams(search);
  if (range === null) {
    for (const name of ["mode", "from", "to", "speed"]) params.delete(name);
  } else {
    params.set("mode", "replay");
    params.set("from", range.from);
    params.set("to", range.to);
    params.set("speed", range.speed);
  }
  // ':' is legal in a query; keep instruments and times readable in the address bar.
  const text = params.toString().replace(/%3A/gi, ":");
  return text === "" ? "" : `?${text}`;
}
