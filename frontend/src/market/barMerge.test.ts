import { describe, expect, it } from "vitest";
import type { Bar } from "../api/types";
import { bar } from "../testing/fakes";
import {
  applyLiveBar,
  findBar,
  findDuplicates,
  findHoles,
  MAX_BARS,
  mergeHistory,
  supersedes,
  TRIM_TO,
} from "./barMerge";

const STEP = 60;

function finals(from: number, to: number): Bar[] {
  const bars: Bar[] = [];
  for (let minute = from; minute < to; minute += 1) bars.push(bar(minute));
  return bars;
}

function applyAll(start: Bar[], live: Bar[]): Bar[] {
  return live.reduce((bars, next) => applyLiveBar(bars, next, STEP).bars, start);
}

describe("supersedes", () => {
  it("orders forming < final < revisions", () => {
    expect(supersedes(bar(0, { final: true }), bar(0, { final: false }))).toBe(true);
    expect(supersedes(bar(0, { final: false }), bar(0, { final: true }))).toBe(false);
    expect(supersedes(bar(0, { revision: 1 }), bar(0, { revision: 0 }))).toBe(true);
    expect(supersedes(bar(0, { revision: 0 }), bar(0, { revision: 1 }))).toBe(false);
    expect(supersedes(bar(0, { final: false, close: 1 }), bar(0, { final: false }))).toBe(true);
  });
});

describe("findBar", () => {
  it("finds a bar or says where it would go", () => {
    const bars = [bar(0), bar(2), bar(3)];
    expect(findBar(bars, bar(2).time)).toBe(1);
    expect(findBar(bars, bar(1).time)).toBe(-2);
    expect(findBar(bars, bar(9).time)).toBe(-4);
    expect(findBar([], bar(0).time)).toBe(-1);
  });
});

describe("applyLiveBar", () => {
  it("appends the first bar of an empty series", () => {
    const result = applyLiveBar([], bar(0, { final: false }), STEP);
    expect(result.bars).toHaveLength(1);
    expect(result.change.kind).toBe("append");
    expect(result.gap).toBe(false);
  });

  it("moves the forming bar in place", () => {
    const start = [...finals(0, 3), bar(3, { final: false, close: 103 })];
    const moved = bar(3, { final: false, close: 104.5, high: 105 });
    const result = applyLiveBar(start, moved, STEP);
    expect(result.change).toEqual({ kind: "replace", bar: moved });
    expect(result.bars).toHaveLength(4);
    expect(result.bars[3]).toBe(moved);
    expect(start[3]!.close).toBe("103"); // the input is not mutated
  });

  it("settles the forming bar with its final version, then appends the next forming bar", () => {
    let bars = [...finals(0, 3), bar(3, { final: false })];
    const settled = bar(3, { final: true, close: 103.2 });
    let result = applyLiveBar(bars, settled, STEP);
    expect(result.change.kind).toBe("replace");
    bars = result.bars;
    expect(bars[3]).toEqual(settled);
    result = applyLiveBar(bars, bar(4, { final: false }), STEP);
    expect(result.change.kind).toBe("append");
    expect(result.bars.map((b) => b.time)).toEqual(finals(0, 5).map((b) => b.time));
  });

  it("ignores a late forming version after the final one", () => {
    const bars = [...finals(0, 3)];
    const result = applyLiveBar(bars, bar(2, { final: false, close: 1 }), STEP);
    expect(result.change.kind).toBe("none");
    expect(result.bars).toBe(bars);
  });

  it("ignores a forming version of an older bar even when that bar is forming", () => {
    const bars = [...finals(0, 2), bar(2, { final: false }), bar(3, { final: false })];
    expect(applyLiveBar(bars, bar(2, { final: false, close: 1 }), STEP).change.kind).toBe("none");
  });

  it("replaces an older bar with its revision", () => {
    const bars = finals(0, 10);
    const revised = bar(4, { revision: 1, close: 99, volume: 12 });
    const result = applyLiveBar(bars, revised, STEP);
    expect(result.change).toEqual({ kind: "replace", bar: revised });
    expect(result.bars[4]).toBe(revised);
    expect(result.bars).toHaveLength(10);
  });

  it("keeps the newer revision when an older one arrives late", () => {
    const bars = finals(0, 5);
    bars[2] = bar(2, { revision: 2, close: 1 });
    expect(applyLiveBar(bars, bar(2, { revision: 1 }), STEP).change.kind).toBe("none");
    expect(applyLiveBar(bars, bar(2, { revision: 0 }), STEP).change.kind).toBe("none");
  });

  it("reports no change for an identical repeat", () => {
    const bars = finals(0, 3);
    expect(applyLiveBar(bars, bar(2), STEP).change.kind).toBe("none");
  });

  it("inserts a missing older final bar and asks for a full redraw", () => {
    const bars = [bar(0), bar(1), bar(3)];
    const result = applyLiveBar(bars, bar(2), STEP);
    expect(result.change.kind).toBe("reset");
    expect(findHoles(result.bars, STEP)).toEqual([]);
  });

  it("drops a forming version of a bar it never had", () => {
    const bars = [bar(0), bar(1), bar(3)];
    expect(applyLiveBar(bars, bar(2, { final: false }), STEP).change.kind).toBe("none");
  });

  it("flags a gap when a new bar skips bucket(s)", () => {
    const result = applyLiveBar(finals(0, 3), bar(5, { final: false }), STEP);
    expect(result.change.kind).toBe("append");
    expect(result.gap).toBe(true);
  });

  it("trims a series that grows past the bound", () => {
    const bars = finals(0, MAX_BARS);
    const result = applyLiveBar(bars, bar(MAX_BARS), STEP);
    expect(result.bars).toHaveLength(TRIM_TO);
    expect(result.change.kind).toBe("reset");
    expect(result.bars[result.bars.length - 1]!.time).toBe(bar(MAX_BARS).time);
  });
});

describe("mergeHistory", () => {
  it("loads history into an empty series", () => {
    expect(mergeHistory([], finals(0, 5))).toEqual(finals(0, 5));
  });

  it("keeps the live forming bar after the history", () => {
    const forming = bar(5, { final: false });
    const merged = mergeHistory([forming], finals(0, 5));
    expect(merged).toHaveLength(6);
    expect(merged[5]).toBe(forming);
  });

  it("prefers the final history version over a held forming one", () => {
    const merged = mergeHistory([bar(4, { final: false, close: 1 })], finals(0, 5));
    expect(merged[4]).toEqual(bar(4));
  });

  it("keeps a live revision newer than the history's version", () => {
    const revised = bar(3, { revision: 1, close: 7 });
    const merged = mergeHistory([...finals(0, 3), revised, bar(4)], finals(0, 5));
    expect(merged[3]).toBe(revised);
  });

  it("takes a history revision newer than the held version", () => {
    const history = finals(0, 5);
    history[1] = bar(1, { revision: 3, close: 5 });
    expect(mergeHistory(finals(0, 5), history)[1]).toEqual(bar(1, { revision: 3, close: 5 }));
  });

  it("drops a stale forming bar that is not the newest", () => {
    const merged = mergeHistory([bar(2, { final: false }), bar(6, { final: false })], finals(0, 2));
    expect(merged.map((b) => b.time)).toEqual([bar(0).time, bar(1).time, bar(6).time]);
  });

  it("drops held bars older than the history window, so a long outage leaves no hole", () => {
    const held = finals(0, 10); // before the outage
    const history = finals(600, 1100); // the latest 500 after it
    const merged = mergeHistory(held, history);
    expect(merged[0]!.time).toBe(bar(600).time);
    expect(findHoles(merged, STEP)).toEqual([]);
  });

  it("keeps held bars when the history is empty", () => {
    const forming = [bar(0, { final: false })];
    expect(mergeHistory(forming, [])).toEqual(forming);
  });
});

describe("reconnect", () => {
  // What the chart saw before the socket dropped, what the gateway pushed meanwhile (lost),
  // what history says afterwards, and what live sends after the re-subscription.
  const before = [...finals(0, 20), bar(20, { final: false })];
  const history = finals(0, 27); // minutes 20..26 became final while we were away
  const liveAfter = [bar(27, { final: false }), bar(27), bar(28, { final: false })];

  function expectContinuous(bars: Bar[], lastMinute: number) {
    expect(findHoles(bars, STEP)).toEqual([]);
    expect(findDuplicates(bars)).toEqual([]);
    expect(bars[0]!.time).toBe(bar(0).time);
    expect(bars[bars.length - 1]!.time).toBe(bar(lastMinute).time);
    expect(bars.slice(0, -1).every((b) => b.final)).toBe(true);
  }

  it("history first, then live: no hole, no duplicate", () => {
    const bars = applyAll(mergeHistory(before, history), liveAfter);
    expectContinuous(bars, 28);
  });

  it("live first (it raced the history request), then history: the same series", () => {
    const liveFirst = applyAll(before, liveAfter);
    const merged = mergeHistory(liveFirst, history);
    expectContinuous(merged, 28);
    expect(merged).toEqual(applyAll(mergeHistory(before, history), liveAfter));
  });

  it("a live bar arriving with a gap is flagged, and the history read fills it", () => {
    const result = applyLiveBar(before, bar(27, { final: false }), STEP);
    expect(result.gap).toBe(true);
    expect(findHoles(result.bars, STEP).length).toBeGreaterThan(0);
    expectContinuous(mergeHistory(result.bars, history), 27);
  });

  it("repeated history reads and repeated live bars change nothing", () => {
    const once = applyAll(mergeHistory(before, history), liveAfter);
    const twice = applyAll(mergeHistory(mergeHistory(once, history), history), liveAfter);
    expect(twice).toEqual(once);
  });

  it("any interleaving of history and live bars converges to the same series", () => {
    const expected = applyAll(mergeHistory(before, history), liveAfter);
    for (let split = 0; split <= liveAfter.length; split += 1) {
      const partial = applyAll(before, liveAfter.slice(0, split));
      const merged = applyAll(mergeHistory(partial, history), liveAfter.slice(split));
      expect(merged).toEqual(expected);
    }
  });
});

describe("findHoles and findDuplicates", () => {
  it("names the missing and repeated open times", () => {
    expect(findHoles([bar(0), bar(3)], STEP)).toEqual([bar(1).time, bar(2).time]);
    expect(findDuplicates([bar(0), bar(0), bar(1)])).toEqual([bar(0).time]);
  });
});
