import { describe, expect, it } from "vitest";
import {
  defaultRange,
  inputValue,
  normaliseTime,
  rangeProblem,
  readReplayAddress,
  speedMessageValue,
  writeReplayAddress,
} from "./replayRange";

const NOW = Date.parse("2024-08-09T00:00:00Z");

describe("replay range", () => {
  it("reads times as UTC, in ISO form or epoch milliseconds", () => {
    expect(normaliseTime("2024-08-08T12:00")).toBe("2024-08-08T12:00:00Z");
    expect(normaliseTime("2024-08-08T14:00:00+02:00")).toBe("2024-08-08T12:00:00Z");
    expect(normaliseTime("1723118400000")).toBe("2024-08-08T12:00:00Z");
    expect(normaliseTime("yesterday")).toBeNull();
    expect(normaliseTime("")).toBeNull();
  });

  it("says what is wrong with a range", () => {
    const ok = { from: "2024-08-08T00:00:00Z", to: "2024-08-08T01:00:00Z", speed: "60" } as const;
    expect(rangeProblem(ok, NOW)).toBeNull();
    expect(rangeProblem({ ...ok, to: ok.from }, NOW)).toMatch(/before the end/);
    expect(rangeProblem({ ...ok, from: "2024-08-10T00:00:00Z", to: "2024-08-11T00:00:00Z" }, NOW)).toMatch(/future/);
    expect(rangeProblem({ ...ok, from: "2024-06-01T00:00:00Z" }, NOW)).toMatch(/31 days/);
    expect(rangeProblem({ ...ok, from: "nonsense" }, NOW)).toMatch(/starts/);
  });

  it("defaults to the last whole hour at 60x", () => {
    expect(defaultRange(NOW + 59_000)).toEqual({
      from: "2024-08-08T23:00:00Z",
      to: "2024-08-09T00:00:00Z",
      speed: "60",
    });
  });

  it("sends speeds as numbers, max as max", () => {
    expect(speedMessageValue("60")).toBe(60);
    expect(speedMessageValue("max")).toBe("max");
  });

  it("round-trips through the address, keeping the chart's parameters", () => {
    const range = { from: "2024-08-08T00:00:00Z", to: "2024-08-08T01:00:00Z", speed: "10" } as const;
    const search = writeReplayAddress("?instrument=binance_usdm:BTCUSDT&timeframe=1m", range);
    expect(search).toBe(
      "?instrument=binance_usdm:BTCUSDT&timeframe=1m&mode=replay&from=2024-08-08T00:00:00Z&to=2024-08-08T01:00:00Z&speed=10",
    );
    expect(readReplayAddress(search)).toEqual(range);
    expect(writeReplayAddress(search, null)).toBe("?instrument=binance_usdm:BTCUSDT&timeframe=1m");
    expect(readReplayAddress("?instrument=binance_usdm:BTCUSDT")).toBeNull();
  });

  it("fills a replay address's missing or bad values with defaults", () => {
    const read = readReplayAddress("?mode=replay&from=2024-08-08T00:00:00Z&speed=7");
    expect(read?.from).toBe("2024-08-08T00:00:00Z");
    expect(read?.speed).toBe("60");
    expect(read?.to).toMatch(/Z$/);
  });

  it("shows ISO times in a datetime-local input as UTC wall time", () => {
    expect(inputValue("2024-08-08T12:34:56Z")).toBe("2024-08-08T12:34");
    expect(inputValue("bad")).toBe("");
  });
});
