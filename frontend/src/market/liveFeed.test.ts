import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { bar, FakeSocket } from "../testing/fakes";
import { type ConnectionStatus, LiveFeed, OFFLINE_AFTER_FAILURES, reconnectDelayMs } from "./liveFeed";

function feedWith(renewed = true) {
  const statuses: ConnectionStatus[] = [];
  const bars: unknown[] = [];
  const subscribed: string[] = [];
  const alerts: unknown[] = [];
  const renewToken = vi.fn(() => Promise.resolve(renewed));
  const feed = new LiveFeed({
    url: "ws://test/ws/BTCUSDT",
    timeframe: "1m",
    accessToken: () => "token-1",
    renewToken,
    handlers: {
      status: (status) => statuses.push(status),
      bars: (_timeframe, batch) => bars.push(...batch),
      subscribed: (timeframe) => subscribed.push(timeframe),
      alert: (message) => alerts.push(message),
    },
    openSocket: (url) => new FakeSocket(url),
    random: () => 0.5,
  });
  return { feed, statuses, bars, subscribed, alerts, renewToken };
}

function goLive(socket: FakeSocket, timeframes = ["1m"]) {
  socket.open();
  socket.push({ type: "welcome", symbol: "BTCUSDT", user: "alice" });
  socket.push({ type: "subscribed", symbol: "BTCUSDT", timeframes });
}

describe("LiveFeed", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.opened = [];
  });
  afterEach(() => vi.useRealTimers());

  it("authenticates with a first message, subscribes, and reports live", () => {
    const { feed, statuses, subscribed } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    goLive(socket);
    expect(socket.sent).toEqual([
      { type: "auth", token: "token-1" },
      { type: "subscribe", timeframes: ["1m"] },
    ]);
    expect(statuses).toEqual(["connecting", "live"]);
    expect(subscribed).toEqual(["1m"]);
  });

  it("delivers bars of its timeframe only, and alert messages", () => {
    const { feed, bars, alerts } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    goLive(socket);
    socket.push({ type: "bars", symbol: "BTCUSDT", timeframe: "1m", bars: [bar(1)] });
    socket.push({ type: "bars", symbol: "BTCUSDT", timeframe: "5m", bars: [bar(2)] });
    socket.push({ type: "alert", event: { id: 1 } });
    socket.onmessage?.({ data: "not json" });
    expect(bars).toEqual([bar(1)]);
    expect(alerts).toHaveLength(1);
  });

  it("reconnects with backoff, says reconnecting, and re-subscribes (history re-read)", () => {
    const { feed, statuses, subscribed } = feedWith();
    feed.start();
    goLive(FakeSocket.last());
    FakeSocket.last().drop();
    expect(statuses[statuses.length - 1]).toBe("reconnecting");
    expect(FakeSocket.opened).toHaveLength(1);
    vi.advanceTimersByTime(reconnectDelayMs(0, () => 0.5));
    expect(FakeSocket.opened).toHaveLength(2);
    goLive(FakeSocket.last());
    expect(statuses).toEqual(["connecting", "live", "reconnecting", "live"]);
    expect(subscribed).toEqual(["1m", "1m"]);
  });

  it("says offline after repeated failures and stays offline until live again", () => {
    const { feed, statuses } = feedWith();
    feed.start();
    goLive(FakeSocket.last());
    for (let attempt = 0; attempt < OFFLINE_AFTER_FAILURES + 2; attempt += 1) {
      FakeSocket.last().drop();
      vi.advanceTimersByTime(10_000 * 1.2);
    }
    expect(statuses).toEqual(["connecting", "live", "reconnecting", "offline"]);
    goLive(FakeSocket.last());
    expect(statuses[statuses.length - 1]).toBe("live");
  });

  it("goes offline with the browser and reconnects at once when it is back", () => {
    const { feed, statuses, subscribed } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    goLive(socket);
    feed.goOffline();
    expect(socket.closedWith?.code).toBe(4001);
    expect(statuses[statuses.length - 1]).toBe("offline");
    feed.retryNow();
    expect(FakeSocket.opened).toHaveLength(2);
    expect(statuses[statuses.length - 1]).toBe("offline"); // until subscribed again
    goLive(FakeSocket.last());
    expect(statuses[statuses.length - 1]).toBe("live");
    expect(subscribed).toEqual(["1m", "1m"]);
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.opened).toHaveLength(2); // the pending retry was cancelled
  });

  it("backs off from half a second to ten seconds", () => {
    expect(reconnectDelayMs(0, () => 0.5)).toBe(500);
    expect(reconnectDelayMs(3, () => 0.5)).toBe(4000);
    expect(reconnectDelayMs(10, () => 0.5)).toBe(10_000);
    expect(reconnectDelayMs(0, () => 0)).toBe(400);
    expect(reconnectDelayMs(0, () => 1)).toBe(600);
  });

  it("renews the token when the gateway refuses it, then reconnects", async () => {
    const { feed, renewToken } = feedWith(true);
    feed.start();
    FakeSocket.last().open();
    FakeSocket.last().drop(1008, "a valid access token is required");
    await vi.runOnlyPendingTimersAsync();
    expect(renewToken).toHaveBeenCalledOnce();
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.opened).toHaveLength(2);
  });

  it("closes a silent socket so it reconnects", () => {
    const { feed } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    goLive(socket);
    vi.advanceTimersByTime(46_000);
    expect(socket.closedWith?.code).toBe(4000);
  });

  it("switches timeframe on the open socket", () => {
    const { feed, subscribed } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    goLive(socket);
    feed.setTimeframe("5m");
    expect(socket.sent.slice(2)).toEqual([
      { type: "unsubscribe", timeframes: ["1m"] },
      { type: "subscribe", timeframes: ["5m"] },
    ]);
    socket.push({ type: "subscribed", timeframes: [] }); // the unsubscribe's echo
    socket.push({ type: "subscribed", timeframes: ["5m"] });
    expect(subscribed).toEqual(["1m", "5m"]);
  });

  it("stops for good: no reconnect after stop", () => {
    const { feed } = feedWith();
    feed.start();
    const socket = FakeSocket.last();
    goLive(socket);
    feed.stop();
    expect(socket.closedWith?.code).toBe(1000);
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.opened).toHaveLength(1);
  });
});
