/** The six timeframes of the mesh, shortest first, with their length in seconds. */
export const TIMEFRAMES = [
  { label: "1m", seconds: 60 },
  { label: "5m", seconds: 300 },
  { label: "15m", seconds: 900 },
  { label: "1h", seconds: 3600 },
  { label: "4h", seconds: 14400 },
  { label: "1d", seconds: 86400 },
] as const;

export type Timeframe = (typeof TIMEFRAMES)[number]["label"];

export function isTimeframe(value: string): value is Timeframe {
  return TIMEFRAMES.some((timeframe) => timeframe.label === value);
}

export function timeframeSeconds(timeframe: Timeframe): number {
  const found = TIMEFRAMES.find((candidate) => candidate.label === timeframe);
  if (found === undefined) throw new Error(`unknown timeframe ${timeframe}`);
  return found.seconds;
}
