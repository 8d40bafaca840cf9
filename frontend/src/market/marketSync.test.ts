import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ChartQuery } from "../api/gateway";
import { bar, chartOf, fakeApi, FakeSocket, finals, STEP } from "../testing/fakes";
import { findDuplicates, findHoles } from "./barMerge";
import { createMarketStore } from "./marketStore";
import { startMarketSync } from "./marketSync";

describe("market sync", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.opened = [];
  });
  afterEach(() => vi.useRealTimers());

  it("streams live bars, and after a dropped socket re-reads history without hole or duplicate", async () => {
    let history = finals(0, 10);
    const chart = vi.fn((_symbol: string, query: ChartQuery) =>
      Promise.resolve(chartOf(query.limit === 5 ? history.slice(-5) : history)),
    );
    const market = createMarketStore(
      fakeApi({
        chart,
        quality: () => Promise.reject(new Error("down")),
        features: () => Promise.reject(new Error("down")),
      }),
    );
    const stop = startMarketSync({
      market,
      accessToken: () => "t",
      renewToken: () => Promise.resolve(true),
      socketUrl: (instrument) => `ws://test/ws/${instrument}`,
      openSocket: (url) => new FakeSocket(url),
      analyticsDelayMs: 100,
    });
    market.getState().selectInstrument("binance_usdm:BTCUSDT");
    await vi.advanceTimersByTimeAsync(0);
    expect(market.getState().bars).toHaveLength(10);
    const first = FakeSocket.last();
    expect(first.url).toBe("ws://test/ws/binance_usdm:BTCUSDT");
    first.open();
    first.push({ type: "subscribed", timeframes: ["1m"] });
    await vi.advanceTimersByTimeAsync(0);
    expect(market.getState().connection).toBe("live");
    first.push({ type: "bars", timeframe: "1m", bars: [bar(10, { final: false })] });
    first.push({ type: "bars", timeframe: "1m", bars: [bar(10), bar(11, { final: false })] });
    expect(market.getState().bars).toHaveLength(12);
    await vi.advanceTimersByTimeAsync(150); // a final bar: indicators re-read
    expect(chart.mock.calls.some(([, query]) => query.limit === 5)).toBe(true);

    first.drop();
    expect(market.getState().connection).toBe("reconnecting");
    history = finals(0, 16); // 11..15 settled while away
    await vi.advanceTimersByTimeAsync(1000);
    const second = FakeSocket.last();
    expect(second).not.toBe(first);
    second.open();
    second.push({ type: "bars", timeframe: "1m", bars: [bar(16, { final: false })] }); // races history
    second.push({ type: "subscribed", timeframes: ["1m"] });
    await vi.advanceTimersByTimeAsync(0);
    const bars = market.getState().bars;
    expect(market.getState().connection).toBe("live");
    expect(findHoles(bars, STEP)).toEqual([]);
    expect(findDuplicates(bars)).toEqual([]);
    expect(bars).toHaveLength(17);
    expect(bars[16]!.final).toBe(false);
    stop();
    expect(second.closedWith?.code).toBe(1000);
  });

  it("opens a new socket per instrument and re-subscribes on a timeframe switch", async () => {
    const market = createMarketStore(
      fakeApi({
        chart: () => Promise.resolve(chartOf([])),
        quality: () => Promise.reject(new Error("down")),
        features: () => Promise.reject(new Error("down")),
      }),
    );
    const stop = startMarketSync({
      market,
      accessToken: () => "t",
      renewToken: () => Promise.resolve(true),
      socketUrl: (instrument) => `ws://test/ws/${instrument}`,
      openSocket: (url) => new FakeSocket(url),
    });
    market.getState().selectInstrument("binance_usdm:BTCUSDT");
    const btc = FakeSocket.last();
    btc.open();
    market.getState().selectTimeframe("1h");
    expect(btc.sent.slice(-1)).toEqual([{ type: "subscribe", timeframes: ["1h"] }]);
    market.getState().selectInstrument("binance_spot:BTCUSDT");
    expect(btc.closedWith?.code).toBe(1000);
    expect(FakeSocket.last().url).toBe("ws://test/ws/binance_spot:BTCUSDT");
    stop();
  });
});
