import { describe, expect, it } from "vitest";
import { bar } from "../testing/fakes";
import { candlePoint, decimalPlaces, DOWN_COLOR, priceFormat, UP_COLOR, volumePoint } from "./chartSeries";
import { indicatorLine, mergeIndicators } from "./indicatorMerge";
import { isTimeframe, TIMEFRAMES, timeframeSeconds } from "./timeframes";

describe("chart series shapes", () => {
  it("turns a bar into a candle and a coloured volume bar", () => {
    // The API's exact strings become numbers only here, to draw.
    const up = bar(1, { open: "61700.8", high: "61744.1", low: "61690", close: "61735.2", volume: "203.143" });
    expect(candlePoint(up)).toEqual({ time: up.time, open: 61700.8, high: 61744.1, low: 61690, close: 61735.2 });
    expect(volumePoint(up)).toEqual({ time: up.time, value: 203.143, color: `${UP_COLOR}80` });
    expect(volumePoint(bar(1, { open: 2, close: 1 })).color).toBe(`${DOWN_COLOR}80`);
  });
});

describe("price axis format", () => {
  it("follows the venue's tick when known, else the bars' own digits", () => {
    expect(decimalPlaces("0.010")).toBe(2);
    expect(decimalPlaces("61700")).toBe(0);
    expect(priceFormat("0.1", [])).toEqual({ precision: 1, minMove: 0.1 });
    expect(priceFormat("0.00001", [])).toEqual({ precision: 5, minMove: 0.00001 });
    expect(priceFormat(null, [bar(0, { close: "0.054321" })])).toEqual({ precision: 6, minMove: 1e-6 });
    expect(priceFormat("", [bar(0, { open: 1, high: 2, low: 1, close: 2 })])).toEqual({ precision: 2, minMove: 0.01 });
  });
});

describe("indicator series", () => {
  it("skips bars without a value yet", () => {
    const rows = [
      { time: 1, rsi: null },
      { time: 2, rsi: 55 },
      { time: 3 },
      { time: 4, rsi: Number.NaN },
      { time: 5, rsi: 60 },
    ];
    expect(indicatorLine(rows, "rsi")).toEqual([
      { time: 2, value: 55 },
      { time: 5, value: 60 },
    ]);
  });

  it("merges rows by time, newer rows winning", () => {
    const merged = mergeIndicators([{ time: 1, rsi: 1 }, { time: 2, rsi: 2 }], [{ time: 2, rsi: 20 }, { time: 3, rsi: 3 }]);
    expect(merged).toEqual([{ time: 1, rsi: 1 }, { time: 2, rsi: 20 }, { time: 3, rsi: 3 }]);
    const same = [{ time: 1 }];
    expect(mergeIndicators(same, [])).toBe(same);
  });
});

describe("timeframes", () => {
  it("knows the six timeframes and their lengths", () => {
    expect(TIMEFRAMES.map((t) => t.label)).toEqual(["1m", "5m", "15m", "1h", "4h", "1d"]);
    expect(timeframeSeconds("4h")).toBe(14_400);
    expect(isTimeframe("15m")).toBe(true);
    expect(isTimeframe("2m")).toBe(false);
    expect(() => timeframeSeconds("2m" as never)).toThrow(/unknown timeframe/);
  });
});
