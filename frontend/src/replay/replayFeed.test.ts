import { beforeEach, describe, expect, it } from "vitest";
import type { Bar, IndicatorRow } from "../api/types";
import { bar, FakeSocket } from "../testing/fakes";
import { ReplayFeed, type ReplayStatus } from "./replayFeed";

const RANGE = { from: "2024-08-08T00:00:00Z", to: "2024-08-08T01:00:00Z", speed: "60" } as const;

function feedWith(speed: "60" | "max" = "60") {
  const statuses: ReplayStatus[] = [];
  const bars: Bar[] = [];
  const rows: IndicatorRow[] = [];
  const problems: string[] = [];
  const feed = new ReplayFeed({
    url: "ws://test/ws/replay/binance_usdm:BTCUSDT",
    timeframe: "1m",
    range: { ...RANGE, speed },
    accessToken: () => "token-1",
    handlers: {
      status: (status) => statuses.push(status),
      bars: (_timeframe, batch) => bars.push(...batch),
      indicators: (_timeframe, row) => rows.push(row),
      problem: (detail) => problems.push(detail),
    },
    openSocket: (url) => new FakeSocket(url),
  });
  return { feed, statuses, bars, rows, problems };
}

describe("ReplayFeed", () => {
  beforeEach(() => {
    FakeSocket.opened = [];
  });

  it("authenticates, then starts the range at its speed", () => {
    const { feed, statuses } = feedWith();
    feed.start();
    expect(statuses).toEqual([{ phase: "connecting", position: null }]);
    const socket = FakeSocket.last();
    expect(socket.url).toBe("ws://test/ws/replay/binance_usdm:BTCUSDT");
    socket.open();
    expect(socket.sent).toEqual([
      { type: "auth", token: "token-1" },
      { type: "start", timeframe: "1m", from: RANGE.from, to: RANGE.to, speed: 60 },
    ]);
  });

  it("sends max speed as max", () => {
    const { feed } = feedWith("max");
    feed.start();
    FakeSocket.last().open();
    expect(FakeSocket.last().sent[1]).toMatchObject({ speed: "max" });
  });

  it("delivers the live socket's bars and indicators messages of its timeframe, and the status", () => {
    const { feed, statuses, bars, rows } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    socket.open();
    socket.push({ type: "welcome", instrument: "binance_usdm:BTCUSDT", user: "alice" });
    socket.push({ type: "replay", state: "playing", position: "2024-08-08T00:00:00+00:00" });
    socket.push({ type: "bars", instrument: "binance_usdm:BTCUSDT", timeframe: "1m", bars: [bar(0)] });
    socket.push({ type: "bars", timeframe: "5m", bars: [bar(1)] });
    socket.push({ type: "indicators", timeframe: "1m", indicators: { time: bar(0).time, rsi: 55 } });
    socket.push({ type: "replay", state: "ended", position: "2024-08-08T01:00:00+00:00" });
    expect(bars).toEqual([bar(0)]);
    expect(rows).toEqual([{ time: bar(0).time, rsi: 55 }]);
    expect(statuses.map((status) => status.phase)).toEqual(["connecting", "playing", "ended"]);
    expect(statuses[1]?.position).toBe("2024-08-08T00:00:00+00:00");
  });

  it("steers: pause, resume, speed and seek", () => {
    const { feed } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    socket.open();
    feed.pause();
    feed.resume();
    feed.setSpeed("max");
    feed.seek("2024-08-08T00:30:00Z");
    expect(socket.sent.slice(2)).toEqual([
      { type: "pause" },
      { type: "resume" },
      { type: "speed", speed: "max" },
      { type: "seek", time: "2024-08-08T00:30:00Z" },
    ]);
  });

  it("reports the gateway's errors and a lost connection, but not its own stop", () => {
    const { feed, statuses, problems } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    socket.open();
    socket.push({ type: "error", detail: "time: outside the replayed range [from, to)" });
    socket.drop(1008, "a valid access token is required");
    expect(problems).toEqual([
      "time: outside the replayed range [from, to)",
      "Replay closed: a valid access token is required",
    ]);
    expect(statuses[statuses.length - 1]?.phase).toBe("failed");

    const second = feedWith();
    second.feed.start();
    FakeSocket.last().open();
    second.feed.stop();
    expect(FakeSocket.last().closedWith?.code).toBe(1000);
    expect(second.problems).toEqual([]);
  });
});
