import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/http";
import type { ChartQuery } from "../api/gateway";
import { bar, chartOf, fakeApi, finals, STEP } from "../testing/fakes";
import { findDuplicates, findHoles } from "./barMerge";
import { createMarketStore } from "./marketStore";

const SPOT = "binance_spot:BTCUSDT";
const USDM = "binance_usdm:BTCUSDT";

function entry(venue: string, symbol: string, active = true) {
  return { instrument: `${venue}:${symbol}`, exchange: venue, symbol, asset_type: "crypto", active, created_at: "" };
}

// The same symbol on two venues: two instruments.
const symbols = [entry("binance_spot", "BTCUSDT"), entry("binance_usdm", "BTCUSDT"), entry("binance_spot", "OLD", false)];

function storeWith(chart: (symbol: string, query: ChartQuery) => Promise<unknown>) {
  return createMarketStore(
    fakeApi({
      symbols: () => Promise.resolve(symbols),
      chart,
      quality: () => Promise.reject(new ApiError(404, { detail: "none yet" })),
      features: () => Promise.resolve({ instrument: SPOT, timeframe: "1m", rows: [] }),
    }),
  );
}

describe("market store", () => {
  it("lists active symbols and selects the first", async () => {
    const store = storeWith(() => Promise.resolve(chartOf([])));
    await store.getState().loadSymbols();
    expect(store.getState().symbols.map((s) => s.instrument)).toEqual([SPOT, USDM]);
    expect(store.getState().instrument).toBe(SPOT);
    expect(store.getState().symbolsState).toBe("ready");
  });

  it("says when symbols cannot be read", async () => {
    const store = createMarketStore(fakeApi({ symbols: () => Promise.reject(new TypeError("fetch failed")) }));
    await store.getState().loadSymbols();
    expect(store.getState().symbolsState).toBe("error");
    expect(store.getState().symbolsError).toBe("The server cannot be reached.");
  });

  it("loads history with indicators, and says empty when there are no bars", async () => {
    const store = storeWith((_symbol, query) =>
      Promise.resolve(query.timeframe === "1m" ? chartOf(finals(0, 30)) : chartOf([])),
    );
    store.getState().selectInstrument(SPOT);
    expect(store.getState().chartState).toBe("loading");
    await store.getState().loadHistory();
    expect(store.getState().bars).toHaveLength(30);
    expect(store.getState().indicators).toHaveLength(30);
    expect(store.getState().chartState).toBe("ready");
    expect(store.getState().barsChange.change.kind).toBe("reset");
    store.getState().selectTimeframe("5m");
    expect(store.getState().bars).toHaveLength(0);
    await store.getState().loadHistory();
    expect(store.getState().chartState).toBe("empty");
  });

  it("shows an error when history fails and nothing is held", async () => {
    const store = storeWith(() => Promise.reject(new ApiError(503, { detail: "bars unavailable" })));
    store.getState().selectInstrument(SPOT);
    await store.getState().loadHistory();
    expect(store.getState().chartState).toBe("error");
    expect(store.getState().chartError).toContain("bars unavailable");
  });

  it("discards a history answer for a symbol the user left", async () => {
    let release: (value: unknown) => void = () => {};
    const store = storeWith(
      (symbol) =>
        new Promise((resolve) => {
          if (symbol === SPOT) release = resolve;
          else resolve(chartOf([bar(0, { close: 5 })], symbol));
        }),
    );
    store.getState().selectInstrument(SPOT);
    const slow = store.getState().loadHistory();
    store.getState().selectInstrument(USDM);
    await store.getState().loadHistory();
    release(chartOf(finals(0, 50)));
    await slow;
    expect(store.getState().bars).toEqual([bar(0, { close: 5 })]);
  });

  it("applies forming, final and revised bars, one numbered change each", async () => {
    const store = storeWith(() => Promise.resolve(chartOf(finals(0, 10))));
    store.getState().selectInstrument(SPOT);
    await store.getState().loadHistory();
    const seen: string[] = [];
    store.subscribe((state, previous) => {
      if (state.barsChange.seq !== previous.barsChange.seq) {
        expect(state.barsChange.seq).toBe(previous.barsChange.seq + 1);
        seen.push(state.barsChange.change.kind);
      }
    });
    const result = store.getState().applyLiveBars(SPOT, "1m", [
      bar(10, { final: false }),
      bar(10, { final: false, close: 111 }),
    ]);
    expect(result).toEqual({ finals: 0, gap: false });
    store.getState().applyLiveBars(SPOT, "1m", [bar(3, { revision: 1, close: 1 }), bar(10), bar(11, { final: false })]);
    expect(seen).toEqual(["append", "replace", "replace", "replace", "append"]);
    const bars = store.getState().bars;
    expect(bars).toHaveLength(12);
    expect(bars[3]!.revision).toBe(1);
    expect(bars[10]!.final).toBe(true);
    expect(findHoles(bars, STEP)).toEqual([]);
    expect(store.getState().liveUpdates).toBe(2);
  });

  it("ignores bars of another instrument (the same symbol on another venue) or timeframe", () => {
    const store = storeWith(() => Promise.resolve(chartOf([])));
    store.getState().selectInstrument(SPOT);
    store.getState().applyLiveBars(USDM, "1m", [bar(0)]);
    store.getState().applyLiveBars(SPOT, "5m", [bar(0)]);
    expect(store.getState().bars).toEqual([]);
  });

  it("after a reconnect, re-reading history leaves no hole and no duplicate", async () => {
    let history = finals(0, 20);
    const store = storeWith(() => Promise.resolve(chartOf(history)));
    store.getState().selectInstrument(SPOT);
    await store.getState().loadHistory();
    store.getState().applyLiveBars(SPOT, "1m", [bar(20, { final: false })]);
    // the socket drops; minutes 20..24 settle meanwhile; after re-subscribing, a live bar
    // races the history request
    history = finals(0, 25);
    const { gap } = store.getState().applyLiveBars(SPOT, "1m", [bar(25, { final: false })]);
    expect(gap).toBe(true);
    await store.getState().loadHistory();
    const bars = store.getState().bars;
    expect(findHoles(bars, STEP)).toEqual([]);
    expect(findDuplicates(bars)).toEqual([]);
    expect(bars).toHaveLength(26);
    expect(bars[25]!.final).toBe(false);
  });

  it("merges fresh indicator rows and fills missed finals from the same answer", async () => {
    const chart = vi.fn((_symbol: string, query: ChartQuery) =>
      Promise.resolve(query.limit === 5 ? chartOf(finals(8, 11)) : chartOf(finals(0, 9))),
    );
    const store = storeWith(chart);
    store.getState().selectInstrument(SPOT);
    await store.getState().loadHistory();
    await store.getState().refreshIndicators();
    expect(store.getState().indicators.map((row) => row.time)).toEqual(finals(0, 11).map((b) => b.time));
    expect(store.getState().bars).toHaveLength(11);
  });

  it("reads quality (404: pending) and the latest features", async () => {
    const store = createMarketStore(
      fakeApi({
        quality: () => Promise.reject(new ApiError(404, { detail: "no quality yet" })),
        features: () =>
          Promise.resolve({
            instrument: SPOT,
            timeframe: "1m",
            rows: [{ time: 1, feature_version: "1", values: { return_1: 0.01 } }],
          }),
      }),
    );
    store.getState().selectInstrument(SPOT);
    await store.getState().refreshQuality();
    await store.getState().refreshFeatures();
    expect(store.getState().qualityState).toBe("empty");
    expect(store.getState().features?.values.return_1).toBe(0.01);
    expect(store.getState().featuresState).toBe("ready");
  });

  it("toggles overlays and panes", () => {
    const store = createMarketStore(fakeApi({}));
    store.getState().toggleOverlay("sma_20");
    store.getState().togglePane("rsi");
    expect(store.getState().overlays.sma_20).toBe(true);
    expect(store.getState().panes).toEqual({ rsi: true, macd: false });
    store.getState().toggleOverlay("sma_20");
    expect(store.getState().overlays.sma_20).toBe(false);
  });
});
