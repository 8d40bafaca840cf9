import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ChartQuery } from "../api/gateway";
import { bar, chartOf, fakeApi, FakeSocket, finals } from "../testing/fakes";
import { createMarketStore } from "../market/marketStore";
import { startMarketSync } from "../market/marketSync";
import { startUrlSync } from "../market/urlState";
import { startReplaySync } from "./replaySync";

const USDM = "binance_usdm:BTCUSDT";

function mesh() {
  const asOf: (string | undefined)[] = [];
  const chart = vi.fn((_instrument: string, query: ChartQuery) =>
    Promise.resolve(chartOf(query.as_of !== undefined ? finals(0, 5) : finals(0, 20))),
  );
  const market = createMarketStore(
    fakeApi({
      chart,
      quality: (_instrument: string, _timeframe: string, at?: string) => {
        asOf.push(at);
        return Promise.reject(new Error("down"));
      },
      features: () => Promise.reject(new Error("down")),
    }),
  );
  const stopLive = startMarketSync({
    market,
    accessToken: () => "t",
    renewToken: () => Promise.resolve(true),
    socketUrl: (instrument) => `ws://test/ws/${instrument}`,
    openSocket: (url) => new FakeSocket(url),
  });
  const stopReplay = startReplaySync({
    market,
    accessToken: () => "t",
    socketUrl: (instrument) => `ws://test/ws/replay/${instrument}`,
    openSocket: (url) => new FakeSocket(url),
  });
  return { market, chart, asOf, stop: () => (stopReplay(), stopLive()) };
}

describe("replay sync", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.parse("2024-08-09T00:00:00Z"));
    FakeSocket.opened = [];
  });
  afterEach(() => vi.useRealTimers());

  it("plays a range: the chart as of its start, then the replayed bars and indicators", async () => {
    const { market, chart, asOf: qualityAsOf, stop } = mesh();
    market.getState().selectInstrument(USDM);
    await vi.advanceTimersByTimeAsync(0);
    const live = FakeSocket.last();
    market.getState().setReplayRange({ from: "2024-08-08T00:00:00Z", to: "2024-08-08T01:00:00Z", speed: "60" });
    expect(market.getState().playReplay()).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(live.closedWith?.code).toBe(1000); // the live socket is closed in replay mode
    const replay = FakeSocket.last();
    expect(replay.url).toBe(`ws://test/ws/replay/${USDM}`);
    const asOf = chart.mock.calls.map(([, query]) => query).find((query) => query.as_of !== undefined);
    expect(asOf).toMatchObject({ end: "2024-08-08T00:00:00Z", as_of: "2024-08-08T00:00:00Z" });
    expect(market.getState().bars).toHaveLength(5);

    replay.open();
    replay.push({ type: "replay", state: "playing", position: "2024-08-08T00:00:00+00:00" });
    replay.push({ type: "bars", timeframe: "1m", bars: [bar(5)] });
    replay.push({ type: "indicators", timeframe: "1m", indicators: { time: bar(5).time, rsi: 61 } });
    replay.push({ type: "bars", timeframe: "1m", bars: [bar(6)] });
    const state = market.getState();
    expect(state.bars.map((b) => b.time)).toEqual(finals(0, 7).map((b) => b.time));
    expect(state.indicators.find((row) => row.time === bar(5).time)?.rsi).toBe(61);
    expect(state.replayStatus.phase).toBe("playing");
    // Quality (and features) as of the range's start, then as of the position at the end.
    expect(qualityAsOf).toContain("2024-08-08T00:00:00Z");
    replay.push({ type: "replay", state: "ended", position: "2024-08-08T01:00:00+00:00" });
    expect(qualityAsOf[qualityAsOf.length - 1]).toBe("2024-08-08T01:00:00+00:00");
    stop();
  });

  it("sends pause, resume and speed to the running replay; Live goes back to the live socket", async () => {
    const { market, stop } = mesh();
    market.getState().selectInstrument(USDM);
    market.getState().setReplayRange({ from: "2024-08-08T00:00:00Z", to: "2024-08-08T01:00:00Z", speed: "60" });
    market.getState().playReplay();
    await vi.advanceTimersByTimeAsync(0);
    const replay = FakeSocket.last();
    replay.open();
    market.getState().setReplayPaused(true);
    market.getState().setReplayPaused(false);
    market.getState().setReplayRange({ speed: "max" });
    expect(replay.sent.slice(2)).toEqual([{ type: "pause" }, { type: "resume" }, { type: "speed", speed: "max" }]);

    market.getState().leaveReplay();
    await vi.advanceTimersByTimeAsync(0);
    expect(replay.closedWith?.code).toBe(1000);
    expect(FakeSocket.last().url).toBe(`ws://test/ws/${USDM}`);
    expect(market.getState().bars).toHaveLength(20); // the live history again
    stop();
  });

  it("refuses a bad range with the reason and stays live", async () => {
    const { market, stop } = mesh();
    market.getState().selectInstrument(USDM);
    market.getState().setReplayRange({ from: "2024-08-08T02:00:00Z", to: "2024-08-08T01:00:00Z" });
    expect(market.getState().playReplay()).toBe(false);
    expect(market.getState().mode).toBe("live");
    expect(market.getState().replayProblem).toMatch(/before the end/);
    stop();
  });

  it("restarts the replay for another timeframe of the same range", async () => {
    const { market, stop } = mesh();
    market.getState().selectInstrument(USDM);
    market.getState().setReplayRange({ from: "2024-08-08T00:00:00Z", to: "2024-08-08T01:00:00Z" });
    market.getState().playReplay();
    await vi.advanceTimersByTimeAsync(0);
    const first = FakeSocket.last();
    market.getState().selectTimeframe("5m");
    await vi.advanceTimersByTimeAsync(0);
    const second = FakeSocket.last();
    expect(first.closedWith?.code).toBe(1000);
    expect(second).not.toBe(first);
    second.open();
    expect(second.sent[1]).toMatchObject({ type: "start", timeframe: "5m" });
    stop();
  });

  it("plays the replay a link names, and writes the mode into the address", async () => {
    let search = `?instrument=${USDM}&timeframe=1m&mode=replay&from=2024-08-08T00:00:00Z&to=2024-08-08T00:10:00Z&speed=max`;
    const { market, stop } = mesh();
    const stopUrl = startUrlSync(market, { search: () => search, replace: (next) => (search = next) });
    await vi.advanceTimersByTimeAsync(0);
    expect(market.getState().mode).toBe("replay");
    const replay = FakeSocket.last();
    replay.open();
    expect(replay.sent[1]).toEqual({
      type: "start",
      timeframe: "1m",
      from: "2024-08-08T00:00:00Z",
      to: "2024-08-08T00:10:00Z",
      speed: "max",
    });
    market.getState().setReplayRange({ speed: "10" });
    expect(search).toContain("speed=10");
    market.getState().leaveReplay();
    expect(search).toBe(`?instrument=${USDM}&timeframe=1m`);
    stopUrl();
    stop();
  });
});
