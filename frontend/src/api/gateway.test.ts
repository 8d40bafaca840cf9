import { describe, expect, it, vi } from "vitest";
import { GatewayApi } from "./gateway";
import { HttpClient } from "./http";

function recordingApi() {
  const calls: { url: string; method: string; body: unknown; auth: string | undefined }[] = [];
  const fetchImpl = vi.fn((url: string, init?: RequestInit) => {
    const headers = (init?.headers ?? {}) as Record<string, string>;
    calls.push({
      url,
      method: init?.method ?? "GET",
      body: init?.body === undefined ? undefined : JSON.parse(String(init.body)),
      auth: headers.Authorization,
    });
    return Promise.resolve(new Response(init?.method === "DELETE" ? null : "{}", { status: init?.method === "DELETE" ? 204 : 200 }));
  });
  const http = new HttpClient(fetchImpl, "http://gw");
  http.useTokens({ accessToken: () => "tok", renew: () => Promise.resolve(false) });
  return { api: new GatewayApi(http), calls };
}

describe("GatewayApi", () => {
  it("calls the gateway's routes with their payloads", async () => {
    const { api, calls } = recordingApi();
    await api.register("alice", "password1");
    await api.login("alice", "password1");
    await api.refresh("r");
    await api.logout("r");
    await api.me();
    await api.symbols();
    await api.chart("yahoo:BTC-USD", { timeframe: "5m", limit: 500 });
    await api.features("binance_usdm:BTCUSDT", "1h");
    await api.quality("binance_spot:^GSPC", "1m");
    await api.health();
    await api.alerts();
    await api.createAlert({ instrument: "binance_usdm:BTCUSDT", timeframe: "1m", condition: "price_above", threshold: 1 });
    await api.deleteAlert(7);
    await api.alertEvents(7);
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      "POST http://gw/api/v1/auth/register",
      "POST http://gw/api/v1/auth/login",
      "POST http://gw/api/v1/auth/refresh",
      "POST http://gw/api/v1/auth/logout",
      "GET http://gw/api/v1/auth/me",
      "GET http://gw/api/v1/symbols",
      // The instrument's ':' stays readable; other reserved characters are escaped.
      "GET http://gw/api/v1/charts/yahoo:BTC-USD?timeframe=5m&limit=500",
      "GET http://gw/api/v1/features/binance_usdm:BTCUSDT?timeframe=1h&limit=1",
      "GET http://gw/api/v1/quality/binance_spot:%5EGSPC?timeframe=1m",
      "GET http://gw/api/v1/health",
      "GET http://gw/api/v1/alerts",
      "POST http://gw/api/v1/alerts",
      "DELETE http://gw/api/v1/alerts/7",
      "GET http://gw/api/v1/alerts/7/events?limit=20",
    ]);
    expect(calls[0]).toMatchObject({ body: { username: "alice", password: "password1" }, auth: undefined });
    expect(calls[2]!.body).toEqual({ refresh_token: "r" });
    expect(calls[4]!.auth).toBe("Bearer tok");
  });
});
